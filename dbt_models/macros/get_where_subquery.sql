{#- Tests of a daily run look at the days it built. With --vars {min_date, max_date} (what Dagster
    passes for a partition run) a test on a relation with a partition_date column sees only that
    window, so a one-day run costs one day of testing rather than a scan of all history, and days
    built before a column existed do not fail the tests of today's run. A build without vars tests
    everything. Overrides dbt's get_where_subquery; the test's own `where` config still applies.
    Why uniqueness within the window is still complete: docs block partition_window_tests. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if execute and min_date is not none and max_date is not none -%}
        {%- if 'partition_date' in tested_columns(relation) -%}
            {%- do conditions.append("partition_date between date '" ~ min_date ~ "' and date '" ~ max_date ~ "'") -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ (conditions | join(' and ')) ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- Lower-case column names of the relation a test runs on. They come from the YAML of the node the
    test is attached to (every column is documented there): a DESCRIBE of the warehouse for each
    test costs more than the one-day test query itself. The warehouse is asked only when the test
    is not attached to this relation. -#}
{% macro tested_columns(relation) -%}
    {%- set node = graph.nodes.get(model.get('attached_node') or '') -%}
    {%- if node and node.columns and (node.alias or node.name) | lower == relation.identifier | lower -%}
        {%- do return(node.columns.keys() | map('lower') | list) -%}
    {%- endif -%}
    {%- do return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) -%}
{%- endmacro %}
