{#- Local time of a naive UTC timestamp in the IANA zone `zone` (a column or a quoted literal):
    DuckDB's ICU time zones, so DST days are 23 h or 25 h long as they are on the road. -#}
{% macro local_time(utc_ts, zone) -%}
    timezone({{ zone }}, timezone('UTC', {{ utc_ts }}))
{%- endmacro %}

{#- The local date beside a UTC day: the local calendar day holding that UTC day's noon, i.e. the
    local day that shares most of its hours with it (the same date from UTC-11 to UTC+11). -#}
{% macro local_date(utc_day, zone) -%}
    cast({{ local_time('(' ~ utc_day ~ ')::timestamp + interval 12 hour', zone) }} as date)
{%- endmacro %}

{#- The zone of a device from its dim_device_time_zones.time_zone column; the configured default for a device
    dim_device_time_zones does not list (a deleted tracker's late rows). -#}
{% macro device_zone(time_zone_column) -%}
    coalesce({{ time_zone_column }}, '{{ var('default_time_zone') }}')
{%- endmacro %}

{#- var('working_hours') ('Mon-Fri 08:00-18:00'; fleet_pipeline.settings.working_hours validates it
    before a run) as {'days': [ISO weekdays], 'start': minute of day, 'end': minute of day}. -#}
{% macro working_hours() -%}
    {%- set names = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] -%}
    {%- set parts = var('working_hours').split() -%}
    {%- if parts | length != 2 -%}
        {%- if exceptions is defined -%}
            {{ exceptions.raise_compiler_error("var working_hours (FLEET_WORKING_HOURS) must look like "
                ~ "'Mon-Fri 08:00-18:00', got '" ~ var('working_hours') ~ "'") }}
        {%- endif -%}
        {#- sqlfluff's stand-in var() has no value: lint the SQL of a one-hour Monday -#}
        {%- set parts = ['Mon', '00:00-01:00'] -%}
    {%- endif -%}
    {%- set days_part, hours_part = parts -%}
    {%- set days = [] -%}
    {%- for item in days_part.split(',') -%}
        {%- set bounds = item.split('-') -%}
        {%- for d in range(names.index(bounds[0]) + 1, names.index(bounds[-1]) + 2) -%}
            {%- do days.append(d) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set start, end = hours_part.split('-') -%}
    {%- do return({
        'days': days,
        'start': (start.split(':')[0] | int) * 60 + (start.split(':')[1] | int),
        'end': (end.split(':')[0] | int) * 60 + (end.split(':')[1] | int)}) -%}
{%- endmacro %}

{#- 'working_hours' | 'after_hours' | 'weekend' of a local timestamp, by var('working_hours'):
    a day not among the working days is weekend, on a working day outside the hours is after hours. -#}
{% macro working_time_class(local_ts) -%}
    {%- set wh = working_hours() -%}
    case
        when isodow({{ local_ts }}) not in ({{ wh['days'] | join(', ') }}) then 'weekend'
        when hour({{ local_ts }}) * 60 + minute({{ local_ts }}) >= {{ wh['start'] }}
             and hour({{ local_ts }}) * 60 + minute({{ local_ts }}) < {{ wh['end'] }} then 'working_hours'
        else 'after_hours'
    end
{%- endmacro %}
