select faa, name as airport_name, lat, lon, alt, tz, dst, tzone
from {{ source('flights', 'raw_airports') }}
