{# A model's schema is its use case: the first folder under models/ (fqn = [project, use case, ...]),
   so models sit beside the raw tables of their use case and a new use case needs no entry in
   dbt_project.yml. An explicit +schema still wins; nodes outside a use-case folder (singular tests)
   keep the target's schema. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name -%}
    {{ custom_schema_name | trim }}
  {%- elif node.resource_type in ('model', 'seed', 'snapshot') and node.fqn | length > 2 -%}
    {{ node.fqn[1] | trim }}
  {%- else -%}
    {{ target.schema | trim }}
  {%- endif -%}
{%- endmacro %}
