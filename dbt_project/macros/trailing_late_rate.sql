{# Late rate and flight count per key over the `days` days strictly before each flight_date.
   The frame stops at 1 day preceding: a day's outcomes are only complete once the day is over,
   so a prediction on day D may use days D-days .. D-1 and nothing from D itself.
   `through` is the last day whose outcomes went in, for the point_in_time test. #}
{% macro trailing_late_rate(history, keys, days) -%}
  {%- set key_list = keys | join(', ') -%}
  with daily as (
      select
          {{ key_list }},
          flight_date,
          count(*) as n_flights,
          count(is_late) as n_outcomes,
          sum(is_late) as n_late
      from {{ history }}
      group by all
  )
  select
      {{ key_list }},
      flight_date,
      cast(sum(n_late) over prior as double) / nullif(sum(n_outcomes) over prior, 0) as late_rate,
      cast(coalesce(sum(n_flights) over prior, 0) as bigint) as n_flights,
      max(case when n_outcomes > 0 then flight_date end) over prior as through
  from daily
  window prior as (
      partition by {{ key_list }}
      order by flight_date
      range between interval {{ days }} day preceding and interval 1 day preceding
  )
{%- endmacro %}
