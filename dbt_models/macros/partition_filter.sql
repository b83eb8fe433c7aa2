{#- Restrict an incremental model to the partition window given as --vars {min_date, max_date}
    (inclusive 'YYYY-MM-DD'); without vars every day is processed (full build). -#}
{% macro partition_filter(column) -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if min_date is not none %} and {{ column }} >= date '{{ min_date }}'{% endif -%}
    {%- if max_date is not none %} and {{ column }} <= date '{{ max_date }}'{% endif -%}
{%- endmacro %}
