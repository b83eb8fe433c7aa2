{#- Use the configured schema name as is (staging / core / marts) instead of dbt's default
    "<target schema>_<custom schema>", so BI tools and Dagster see stable schema names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
