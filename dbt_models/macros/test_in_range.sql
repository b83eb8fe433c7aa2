{#- Generic range test (dbt_utils is not available): rows whose value lies outside
    [min_value, max_value]; either bound may be omitted. Nulls pass (not_null tests them). -#}
{% test in_range(model, column_name, min_value=none, max_value=none) %}
select *
from {{ model }}
where {{ column_name }} is not null
  and (
    false
    {% if min_value is not none %} or {{ column_name }} < {{ min_value }}{% endif %}
    {% if max_value is not none %} or {{ column_name }} > {{ max_value }}{% endif %}
  )
{% endtest %}

{#- Uniqueness of a combination of columns (dbt_utils.unique_combination_of_columns). -#}
{% test unique_combination(model, combination) %}
select {{ combination | join(', ') }}, count(*) as n
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Rows whose time does not fall on their partition_date, the UTC day they are partitioned by.
    Uniqueness tested within a run's window relies on it (docs block partition_window_tests). -#}
{% test on_partition_day(model, column_name) %}
select *
from {{ model }}
where cast({{ column_name }} as date) <> partition_date
{% endtest %}
