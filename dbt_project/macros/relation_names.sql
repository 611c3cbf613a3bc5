{# DuckDB resolves a view's unqualified names in the view's own catalog, and dbt-duckdb names the
   catalog after the warehouse file's stem. Leaving the catalog out of ref/source keeps the stored
   views working when the file is copied, renamed or attached under another alias. #}
{% macro ref() -%}
  {%- do return(builtins.ref(*varargs, **kwargs).include(database=false)) -%}
{%- endmacro %}

{% macro source() -%}
  {%- do return(builtins.source(*varargs, **kwargs).include(database=false)) -%}
{%- endmacro %}
