{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set min_date = var('min_date', none) -%}
{%- set max_date = var('max_date', none) -%}
{%- set lookback = var('visit_lookback_days') -%}
-- Zone visits: each entry paired with the next event of the same device and zone when that is an
-- exit (Tracksolid's fence alarms in/out, Navixy's inzone/outzone events; fct_alarms names the
-- zone). Ends that pair with nothing are kept and flagged: an entry not left yet ('open'), an entry
-- followed by another entry ('no_exit'), an exit with no entry before it ('no_entry': the vehicle
-- was inside before the loaded data). One row per visit, in the partition of the UTC day it was
-- entered (of its exit when its entry is unknown). A visit is closed by an exit loaded later, so a
-- run rewrites the visit_lookback_days before its window too, from the zone events of twice that
-- far back (a visit longer than visit_lookback_days loses its entry) up to those loaded after it.
with zone_events as (
    select
        imei, platform, account, alarm_at, canonical_type = 'geofence_in' as is_entry,
        coalesce(geofence_id, '(unnamed)') as zone
    from {{ ref('fct_alarms') }}
    where canonical_type in ('geofence_in', 'geofence_out')
      {%- if min_date is not none %} and partition_date >= date '{{ min_date }}' - {{ 2 * lookback }}{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}' + {{ lookback }}{% endif %}
),

neighbours as (
    select
        *,
        lag(is_entry) over w as prev_is_entry,
        lag(alarm_at) over w as prev_at,
        lead(is_entry) over w as next_is_entry
    from zone_events
    window w as (partition by imei, zone order by alarm_at, is_entry desc)
),

visits as (
    -- every exit: closing the entry just before it, or with no entry
    select
        imei, platform, account, zone,
        case when prev_is_entry then prev_at end as entered_at,
        alarm_at as exited_at,
        case when prev_is_entry then 'closed' else 'no_entry' end as visit_status
    from neighbours
    where not is_entry
    union all
    -- entries no exit follows
    select
        imei, platform, account, zone, alarm_at as entered_at, null as exited_at,
        case when next_is_entry is null then 'open' else 'no_exit' end as visit_status
    from neighbours
    where is_entry and coalesce(next_is_entry, true)
),

placed as (
    select *, cast(coalesce(entered_at, exited_at) as date) as partition_date
    from visits
)

select
    md5(imei || '|' || zone || '|' || cast(coalesce(entered_at, exited_at) as varchar)) as visit_id,
    v.partition_date,
    v.partition_date as day,
    {{ local_date('v.partition_date', device_zone('z.time_zone')) }} as local_date,
    v.platform,
    v.account,
    v.imei,
    v.zone,
    v.entered_at,
    v.exited_at,
    date_diff('second', v.entered_at, v.exited_at) as dwell_s,
    v.visit_status,
    v.visit_status = 'closed' as is_matched
from placed as v
left join (select imei, time_zone from {{ ref('dim_device_time_zones') }}) as z using (imei)
where true
  {%- if min_date is not none %} and v.partition_date >= date '{{ min_date }}' - {{ lookback }}{% endif %}
  {%- if max_date is not none %} and v.partition_date <= date '{{ max_date }}'{% endif %}
