{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set min_date = var('min_date', none) -%}
{%- set max_date = var('max_date', none) -%}
-- Health of every listed device on every UTC day of the window (from its activation day on): fixes
-- that day, its last fix by the end of the day (loaded fixes of the health_lookback_days before,
-- and the last fix the vendors' snapshots taken by then report, so a snapshot day has it too), the days
-- since, offline after offline_days (FLEET_OFFLINE_DAYS) without a fix (or none in the lookback),
-- the last state, heartbeat, battery, power and GSM signal its vendor reported by the end of the
-- day (daily snapshots: Navixy states, Tracksolid positions), the heartbeats Tracksolid pushed (the
-- last one by the end of the day, with its power level and GSM signal), the DTC fault codes pushed
-- that day, low-battery alarms and the rows of its vendor's data that validation refused for that day.
with days as (
    {%- if min_date is not none and max_date is not none %}
    select cast(d as date) as partition_date
    from unnest(generate_series(date '{{ min_date }}'::timestamp, date '{{ max_date }}'::timestamp,
                                interval 1 day)) as t (d)
    {%- else %}
    select distinct partition_date from {{ ref('fct_track_points') }}
    {%- endif %}
),

device_days as (
    select d.imei, d.platform, d.account, z.time_zone, d.is_enabled, days.partition_date
    from {{ ref('dim_devices') }} as d
    left join {{ ref('dim_device_time_zones') }} as z using (imei)
    cross join days
    where d.activated_at is null or cast(d.activated_at as date) <= days.partition_date
),

fixes_per_day as (
    select imei, partition_date, count(*) as fix_count, max(gps_time) as last_fix_at
    from {{ ref('fct_track_points') }}
    where true
      {%- if min_date is not none %}
      and partition_date >= date '{{ min_date }}' - {{ var('health_lookback_days') }}{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}'{% endif %}
    group by imei, partition_date
),

last_fix as (
    select
        dd.imei, dd.partition_date,
        max(f.last_fix_at) as last_fix_at,
        coalesce(max(f.fix_count) filter (where f.partition_date = dd.partition_date), 0) as fix_count
    from device_days as dd
    left join fixes_per_day as f
        on f.imei = dd.imei
       and f.partition_date <= dd.partition_date
       and f.partition_date > dd.partition_date - {{ var('health_lookback_days') }}
    group by dd.imei, dd.partition_date
),

-- The vendors' daily snapshots, each device's latest taken by the end of the day.
snapshots as (
    select
        imei, snapshot_at, gps_time, connection_status || '/' || movement_status as last_state,
        last_seen_at as last_heartbeat_at, battery_pct, cast(null as double) as power_v, gsm_signal_pct
    from {{ ref('stg_navixy__states') }}
    union all
    select
        imei, snapshot_at, gps_time,
        case when moving then 'moving' when ignition_on then 'ignition_on' else 'stopped' end as last_state,
        last_seen_at as last_heartbeat_at, battery_pct, power_v, cast(null as integer) as gsm_signal_pct
    from {{ ref('stg_tracksolid__positions') }}
),

-- The heartbeats Tracksolid pushed, per device and UTC day, over the lookback.
pushed_heartbeats as (
    select imei, partition_date, heartbeats, last_heartbeat_at, last_power_level_pct, last_gsm_signal
    from {{ ref('fct_device_heartbeats') }}
    where true
      {%- if min_date is not none %}
      and partition_date >= date '{{ min_date }}' - {{ var('health_lookback_days') }}{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}'{% endif %}
),

-- The device was heard from: in a snapshot, or by a pushed heartbeat; the latest of both counts.
heartbeats as (
    select imei, last_heartbeat_at as heartbeat_at from snapshots
    union all
    select imei, last_heartbeat_at as heartbeat_at from pushed_heartbeats
),

pushed_heartbeat_by_day as (
    select
        dd.imei, dd.partition_date,
        -- bigint, not sum()'s hugeint, which the serving Parquet files cannot hold as an integer
        cast(coalesce(sum(p.heartbeats) filter (where p.partition_date = dd.partition_date), 0) as bigint)
            as pushed_heartbeats,
        max_by(p.last_power_level_pct, p.last_heartbeat_at) as last_power_level_pct,
        max_by(p.last_gsm_signal, p.last_heartbeat_at) as last_gsm_signal
    from device_days as dd
    join pushed_heartbeats as p
        on p.imei = dd.imei
       and p.partition_date <= dd.partition_date
       and p.partition_date > dd.partition_date - {{ var('health_lookback_days') }}
    group by dd.imei, dd.partition_date
),

dtc_by_day as (
    select
        imei, partition_date, count(*) as dtc_codes_reported,
        string_agg(distinct dtc_code, ',' order by dtc_code) as dtc_codes
    from {{ ref('fct_dtc_codes') }}
    where true {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

state_by_day as (
    select
        dd.imei, dd.partition_date,
        max_by(s.last_state, s.snapshot_at) as last_state,
        max(s.snapshot_at) as last_state_at,
        max(s.gps_time) as last_fix_at,
        max_by(s.battery_pct, s.snapshot_at) as battery_pct,
        max_by(s.power_v, s.snapshot_at) as power_v,
        max_by(s.gsm_signal_pct, s.snapshot_at) as gsm_signal_pct
    from device_days as dd
    join snapshots as s on s.imei = dd.imei and s.snapshot_at < dd.partition_date + interval 1 day
    group by dd.imei, dd.partition_date
),

heartbeat_by_day as (
    select dd.imei, dd.partition_date, max(h.heartbeat_at) as last_heartbeat_at
    from device_days as dd
    join heartbeats as h on h.imei = dd.imei and h.heartbeat_at < dd.partition_date + interval 1 day
    group by dd.imei, dd.partition_date
),

low_battery as (
    select imei, partition_date, count(*) as low_battery_alarms
    from {{ ref('fct_alarms') }}
    where canonical_type = 'low_battery' {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

rejects as (
    select imei, try_cast(partition_key as date) as partition_date, count(*) as rejected_rows
    from (
        select imei, partition_key from {{ ref('stg_tracksolid__rejects') }}
        union all
        select coalesce(r.imei, t.imei) as imei, r.partition_key
        from {{ ref('stg_navixy__rejects') }} as r
        left join (select distinct imei, tracker_id from {{ ref('stg_navixy__trackers') }}) as t
            on t.tracker_id = r.tracker_id
    )
    where imei is not null
    group by all
)

select
    dd.partition_date,
    {{ local_date('dd.partition_date', device_zone('dd.time_zone')) }} as local_date,
    dd.platform,
    dd.account,
    dd.imei,
    dd.is_enabled,
    f.fix_count,
    greatest(f.last_fix_at, s.last_fix_at) as last_fix_at,
    dd.partition_date - cast(greatest(f.last_fix_at, s.last_fix_at) as date) as days_without_fixes,
    coalesce(
        dd.partition_date - cast(greatest(f.last_fix_at, s.last_fix_at) as date) >= {{ var('offline_days') }}, true
    ) as is_offline,
    s.last_state,
    s.last_state_at,
    h.last_heartbeat_at,
    s.battery_pct,
    s.power_v,
    s.gsm_signal_pct,
    coalesce(p.pushed_heartbeats, 0) as pushed_heartbeats,
    p.last_power_level_pct,
    p.last_gsm_signal,
    coalesce(c.dtc_codes_reported, 0) as dtc_codes_reported,
    c.dtc_codes,
    coalesce(b.low_battery_alarms, 0) as low_battery_alarms,
    coalesce(r.rejected_rows, 0) as rejected_rows
from device_days as dd
left join last_fix as f using (imei, partition_date)
left join state_by_day as s using (imei, partition_date)
left join heartbeat_by_day as h using (imei, partition_date)
left join pushed_heartbeat_by_day as p using (imei, partition_date)
left join dtc_by_day as c using (imei, partition_date)
left join low_battery as b using (imei, partition_date)
left join rejects as r using (imei, partition_date)
