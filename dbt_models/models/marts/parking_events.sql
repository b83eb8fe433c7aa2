{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set min_date = var('min_date', none) -%}
{%- set max_date = var('max_date', none) -%}
-- One row per parking, idling or unknown-ignition stop, in the partition of the day it started.
-- The vendor's report is the authority where the platform has one (Tracksolid), but it lists a
-- parking only once it has ended: an evening parking still going on when the day is extracted is
-- missing until a later re-run. A derived stop (from track points) fills in for any stop the report
-- does not have, so the day is complete at once; Navixy has no report, so its stops are all derived.
-- A derived stop is the report's stop when the two OVERLAP in time: while some fixes are still in
-- the device's buffer the derived stop starts (or ends) 20-90 minutes off the reported one, so
-- matching on the start time would count that stop twice.
-- Rewrites the window's partitions and those of earlier stops that reach into it (fct_stops
-- finishes open stops with a later day's fixes).
with stops as (
    select * from {{ ref('fct_stops') }}
    where {{ stop_partitions_reaching_window(ref('fct_stops')) }}
),

vendor as (
    select * from stops where stop_source = 'vendor'
),

-- Reported stops of the neighbouring days too: a derived stop is compared with the report of its
-- own start day and the days either side (a stop the fixes place just past midnight).
report_nearby as (
    select imei, started_at, ended_at, partition_date + s.shift as near_day
    from {{ ref('fct_stops') }}
    cross join (values (-1), (0), (1)) as s (shift)
    where stop_source = 'vendor'
      {%- if min_date is not none %}
      and partition_date >= date '{{ min_date }}' - {{ var('stop_lookahead_days') }} - 1{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}' + 1{% endif %}
),

derived_not_in_report as (
    select d.*
    from stops as d
    where d.stop_source = 'derived'
      and not exists (
          select 1 from report_nearby as v
          where v.imei = d.imei and v.near_day = d.partition_date
            and v.started_at < d.ended_at and d.started_at < v.ended_at
      )
),

events as (
    select * from vendor
    union all
    select * from derived_not_in_report
),

unseen_movement as (
    {{ device_days_with_unseen_movement() }}
),

-- The night window of the start day: [00:00, night_end) and [night_start, next day's night_end).
night as (
    select
        *,
        partition_date + interval {{ var('night_start_hour') }} hour as evening_from,
        partition_date + interval 1 day + interval {{ var('night_end_hour') }} hour as evening_to,
        partition_date + interval {{ var('night_end_hour') }} hour as early_to
    from events
)

select
    stop_id, imei, platform, account, stop_source, stop_kind, partition_date, partition_date as day,
    {{ local_date('partition_date', device_zone('z.time_zone')) }} as local_date,
    started_at, ended_at, duration_s, ignition_on, lat, lng,
    greatest(date_diff('second', greatest(started_at, partition_date::timestamp), least(ended_at, early_to)), 0)
    + greatest(date_diff('second', greatest(started_at, evening_from), least(ended_at, evening_to)), 0)
        as night_s,
    cast(ended_at as date) > partition_date as is_overnight,
    is_open,
    -- can still change: no departure loaded yet, or a day it spans has fixes still to come
    is_open or exists (
        select 1 from unseen_movement as u
        where u.imei = night.imei
          and u.partition_date between night.partition_date and cast(night.ended_at as date)
    ) as is_provisional
from night
left join (select imei, time_zone from {{ ref('dim_device_time_zones') }}) as z using (imei)
