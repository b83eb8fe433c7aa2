{#- Tests of a daily run look at the days it built. With --vars {min_date, max_date} (what Dagster
    passes for a partition run) a test on a relation with a partition_date column sees only that
    window, so a one-day run costs one day of testing rather than a scan of all history, and days
    built before a column existed do not fail the tests of today's run. A build without vars tests
    everything. Overrides dbt's get_where_subquery; the test's own `where` config still applies. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if execute and min_date is not none and max_date is not none -%}
        {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if 'partition_date' in columns -%}
            {%- do conditions.append("partition_date between date '" ~ min_date ~ "' and date '" ~ max_date ~ "'") -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ (conditions | join(' and ')) ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
