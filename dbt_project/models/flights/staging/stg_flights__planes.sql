select
    tailnum,
    year as plane_year,
    seats,
    engine
from {{ source('flights', 'raw_planes') }}
