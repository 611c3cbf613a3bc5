{# The partition window Dagster asks for: [start_date, end_date), end exclusive.
   lookback_days widens the read (never the write) for features that need earlier days. #}
{% macro in_window(date_column, lookback_days=0) -%}
  {{ date_column }} >= date '{{ var("start_date") }}' - interval {{ lookback_days }} day
  and {{ date_column }} < date '{{ var("end_date") }}'
{%- endmacro %}

{# Pre-hook for incremental feature models: clear the window first (in the same transaction as the
   delete+insert), so a rerun also drops rows whose raw rows disappeared, not just replaces keys. #}
{% macro clear_window(date_column) -%}
  {% if is_incremental() %}
    delete from {{ this }} where {{ in_window(date_column) }}
  {% endif %}
{%- endmacro %}
