select
    origin,
    _partition as observed_date,
    time_hour,
    temp,
    dewp,
    humid,
    wind_speed,
    precip,
    visib,
    pressure
from {{ source('flights', 'raw_weather') }}
