{# Use the folder's +schema as-is (flights, weather) instead of dbt's <target>_<custom> default,
   so models sit beside the raw tables of their use case. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
