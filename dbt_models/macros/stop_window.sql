{#- The partitions of a stops relation (fct_stops, parking_events) a run must rewrite: those of the
    window, and those before it holding a stop that reaches into it (an evening or weekend parking
    ended, or extended, by the window's fixes; see fct_stops). Without vars: every partition. -#}
{% macro stop_partitions_reaching_window(relation) -%}
    {%- set min_date = var('min_date', none) -%}
    {%- if min_date is none -%}
        (true {{ partition_filter('partition_date') }})
    {%- else -%}
        ((true {{ partition_filter('partition_date') }})
         or partition_date in (
            select partition_date from {{ relation }}
            where partition_date >= date '{{ min_date }}' - {{ var('stop_lookahead_days') }}
              and partition_date < date '{{ min_date }}'
              and ended_at >= date '{{ min_date }}'))
    {%- endif -%}
{%- endmacro %}

{#- Device-days whose fixes show the vehicle moved unseen: two consecutive fixes at least
    unseen_move_min_gap_s apart and more than stop_max_drift_m from each other. A driving tracker
    reports every few seconds and a parked one repeats its place, so such a hole is fixes still in
    the device's buffer (uploaded late, loaded by a later re-run) or lost: a stop may start late, end
    early or be missing, so the day's figures can still change (is_provisional in the marts). -#}
{% macro device_days_with_unseen_movement() -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    select imei, partition_date
    from {{ ref('fct_track_points') }}
    where seconds_from_prev >= {{ var('unseen_move_min_gap_s') }}
      and distance_from_prev_km * 1000 > {{ var('stop_max_drift_m') }}
      {%- if min_date is not none %}
      and partition_date >= date '{{ min_date }}' - {{ var('stop_lookahead_days') }}{% endif %}
      {%- if max_date is not none %}
      and partition_date <= date '{{ max_date }}' + {{ var('stop_lookahead_days') }}{% endif %}
    group by imei, partition_date
{%- endmacro %}
