{#- The vendor account of a raw row. Raw tables loaded before the account column existed got it
    empty on their next load (rows of days not loaded since keep NULL): those rows are the account
    "default"'s, as the loader's partition replacement also counts them. -#}
{% macro vendor_account() -%}
    coalesce(account, 'default') as account
{%- endmacro %}
