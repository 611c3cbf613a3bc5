select carrier, name as carrier_name
from {{ source('flights', 'raw_airlines') }}
