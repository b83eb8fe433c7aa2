{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set max_gap = var('speeding_max_gap_s') -%}
-- Speeding per device and UTC day. Overspeed events are the devices' own alarms (canonical type
-- overspeed): each device raises them at the threshold configured on it, which the vendors'
-- APIs do not report, so per 100 km of the day's chosen km they compare devices by how often they
-- alarm. Time above the limit is measured against the fleet's limit, var speed_limit_kmh
-- (FLEET_SPEED_LIMIT_KMH), where the fixes allow: a fix faster than the limit counts the seconds up
-- to the next fix of the day, provided that comes within speeding_max_gap_s ({{ max_gap }} s; a
-- longer silence is not measured). A device reports the speed of the stretch it is starting, so
-- dense fixes (every few seconds to half a minute while driving) give the time to within a fix.
with days as (
    select imei, partition_date, platform, account, chosen_km, tracker_blocked, is_provisional
    from {{ ref('mileage_daily') }}
    where true {{ partition_filter('partition_date') }}
),

alarms as (
    select imei, partition_date, count(*) as overspeed_count, max(speed_kmh) as max_alarm_speed_kmh
    from {{ ref('fct_alarms') }}
    where canonical_type = 'overspeed' {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

fixes as (
    select
        imei, partition_date, speed_kmh,
        date_diff('second', gps_time, lead(gps_time) over (partition by imei, partition_date order by gps_time))
            as seconds_to_next
    from {{ ref('fct_track_points') }}
    where true {{ partition_filter('partition_date') }}
),

above as (
    select
        imei, partition_date,
        max(speed_kmh) as max_speed_kmh,
        cast(coalesce(sum(seconds_to_next) filter (
            where speed_kmh > {{ var('speed_limit_kmh') }} and seconds_to_next <= {{ max_gap }}), 0) as bigint)
            as seconds_above_limit,
        count(*) filter (where speed_kmh > {{ var('speed_limit_kmh') }}) as fixes_above_limit
    from fixes
    group by imei, partition_date
)

select
    d.partition_date,
    {{ local_date('d.partition_date', device_zone('z.time_zone')) }} as local_date,
    d.platform,
    d.account,
    d.imei,
    d.chosen_km as km,
    case when not d.tracker_blocked then coalesce(a.overspeed_count, 0) end as overspeed_count,
    case when not d.tracker_blocked then coalesce(a.overspeed_count, 0) * 100.0 / nullif(d.chosen_km, 0) end
        as overspeed_per_100km,
    {{ var('speed_limit_kmh') }} as speed_limit_kmh,
    s.seconds_above_limit,
    s.fixes_above_limit,
    s.max_speed_kmh,
    d.is_provisional
from days as d
left join (select imei, time_zone from {{ ref('dim_device_time_zones') }}) as z using (imei)
left join alarms as a using (imei, partition_date)
left join above as s using (imei, partition_date)
