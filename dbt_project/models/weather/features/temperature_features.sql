{% set lookback_days = 1 %}
{{ config(
    materialized='incremental',
    unique_key='reading_id',
    pre_hook="{{ clear_window('reading_date') }}",
    meta={'partition_date': 'reading_date', 'lookback_days': lookback_days},
) }}

-- One day of lookback: the first hour of the window is predicted from the hour before it.
with readings as (
    select * from {{ ref('stg_weather__readings') }}
    where {{ in_window('reading_date', lookback_days) }}
)

select
    target.origin || '_' || strftime(target.time_hour, '%Y-%m-%dT%H:%M') as reading_id,
    target.reading_date,
    target.time_hour as forecast_for,
    target.temp as temp_next_hour,
    -- features: the previous hour's observation only (the join is on the exact hour, so a gap in
    -- the readings drops the row instead of silently using an older one)
    prev.temp,
    prev.dewp,
    prev.humid,
    prev.wind_speed,
    prev.pressure,
    prev.visib,
    prev.precip,
    prev.hour as hour_of_day,
    prev.month,
    target.origin,
    prev.time_hour as observed_at
from readings as target
inner join readings as prev
    on prev.origin = target.origin
    and prev.time_hour = target.time_hour - interval 1 hour
where {{ in_window('target.reading_date') }}
