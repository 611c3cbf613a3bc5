-- _partition is the local date; filtering on it lets DuckDB skip other days' row groups.
select
    origin,
    _partition as reading_date,
    time_hour,
    hour,
    month,
    temp,
    dewp,
    humid,
    wind_speed,
    pressure,
    visib,
    precip
from {{ source('weather', 'raw_weather') }}
