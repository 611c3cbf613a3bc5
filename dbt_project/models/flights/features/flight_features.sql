{% set lookback_days = 28 %}
{#- meta tells the orchestrator how to partition this model and which raw days a day reads -#}
{{ config(
    materialized='incremental',
    unique_key='flight_id',
    pre_hook="{{ clear_window('flight_date') }}",
    meta={'partition_date': 'flight_date', 'lookback_days': lookback_days},
) }}

-- Only the window's flights are written; the 28 days before it are read for the trailing rates,
-- so a daily run costs the same on day 300 as on day 30.
with history as (
    select
        flight_date,
        carrier,
        origin,
        dest,
        case when arr_delay >= 15 then 1 when arr_delay is not null then 0 end as is_late
    from {{ ref('stg_flights__flights') }}
    where {{ in_window('flight_date', lookback_days) }}
),

carrier_rates as ({{ trailing_late_rate('history', ['carrier'], 28) }}),
route_rates as ({{ trailing_late_rate('history', ['origin', 'dest'], 28) }}),
origin_rates as ({{ trailing_late_rate('history', ['origin'], 7) }}),

flights as (
    select * from {{ ref('stg_flights__flights') }}
    where {{ in_window('flight_date') }}
),

weather as (
    select * from {{ ref('stg_flights__weather') }}
    where {{ in_window('observed_date') }}
)

select
    strftime(f.flight_date, '%Y-%m-%d') || '_' || f.carrier || '_' || f.flight || '_' || f.origin
        as flight_id,
    f.flight_date,
    f.scheduled_departure,
    -- numeric features: all known before the doors close
    f.hour as sched_hour,
    isodow(f.flight_date) as day_of_week,
    f.distance,
    w.temp,
    w.dewp,
    w.humid,
    w.wind_speed,
    w.precip,
    w.visib,
    w.pressure,
    f.year - p.plane_year as plane_age,
    p.seats as plane_seats,
    c.late_rate as carrier_late_rate_28d,
    r.late_rate as route_late_rate_28d,
    o.late_rate as origin_late_rate_7d,
    r.n_flights as route_flights_28d,
    -- categorical features
    f.origin,
    f.dest,
    f.carrier,
    p.engine as plane_engine,
    -- when the inputs were known, for the point_in_time test and auditors
    w.time_hour as weather_observed_at,
    greatest(c.through, r.through, o.through) as late_rates_through,
    -- label: NULL for cancelled or diverted flights (no arrival)
    cast(case when f.arr_delay >= 15 then 1 when f.arr_delay is not null then 0 end as integer)
        as is_late
from flights as f
left join weather as w
    on w.origin = f.origin and w.time_hour = f.time_hour
left join {{ ref('stg_flights__planes') }} as p
    on p.tailnum = f.tailnum
left join carrier_rates as c
    on c.carrier = f.carrier and c.flight_date = f.flight_date
left join route_rates as r
    on r.origin = f.origin and r.dest = f.dest and r.flight_date = f.flight_date
left join origin_rates as o
    on o.origin = f.origin and o.flight_date = f.flight_date
