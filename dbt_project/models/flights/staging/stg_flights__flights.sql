-- _partition is the local date from year/month/day; filtering on it lets DuckDB skip the
-- row groups of other days instead of scanning the whole history.
select
    _partition as flight_date,
    carrier,
    flight,
    origin,
    dest,
    tailnum,
    year,
    hour,
    minute,
    distance,
    time_hour,
    time_hour + to_minutes(minute) as scheduled_departure,
    -- the outcome: for the label and for later days' trailing rates, never a same-flight feature
    arr_delay
from {{ source('flights', 'raw_flights') }}
