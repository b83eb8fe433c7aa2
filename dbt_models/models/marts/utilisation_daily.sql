{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Use of each vehicle per device and UTC day, with its local date and the fleet's working week.
-- Driving: the platform's trips (departure to arrival, lights and short stops inside). Engine on:
-- driving plus idling, the stops of at least stop_min_duration_s with the ignition on all along
-- (parking_daily: from the fixes on Tracksolid, from ignition events and states on Navixy), so
-- idle_share is the part of the engine's running time spent standing. A stop of unknown ignition
-- counts as neither. Km are mileage_daily's chosen figure, split by the local time of the fixes:
-- each stretch between two fixes goes to the working hours, after hours or weekend by the local
-- time of its middle (macro working_time_class, var working_hours), and the shares of the fixes'
-- km are applied to chosen_km, so the three add up to km.
with days as (
    select
        imei, partition_date, platform, account, chosen_km, tracker_blocked, is_provisional
    from {{ ref('mileage_daily') }}
    where true {{ partition_filter('partition_date') }}
),

zones as (
    select imei, time_zone from {{ ref('dim_device_time_zones') }}
),

trips as (
    select imei, partition_date, count(*) as trip_count, cast(sum(duration_s) as bigint) as driving_s
    from {{ ref('fct_trips') }}
    where true {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

idling as (
    select imei, partition_date, idling_s
    from {{ ref('parking_daily') }}
    where true {{ partition_filter('partition_date') }}
),

stretch_middles as (
    select
        p.imei,
        p.partition_date,
        coalesce(p.vendor_distance_km, p.distance_from_prev_km) as km,
        p.gps_time - to_seconds(p.seconds_from_prev / 2) as utc_middle,
        {{ device_zone('z.time_zone') }} as time_zone
    from {{ ref('fct_track_points') }} as p
    left join zones as z using (imei)
    where p.seconds_from_prev > 0 {{ partition_filter('p.partition_date') }}
),

-- A zone's offset from UTC for each minute the stretches' middles fall in. Converting each fix's
-- time with its own zone looks the zone up every row: 10 s for the 2.9 million fixes of 10,000
-- devices, against half a second this way. Offsets change only at whole minutes (daylight saving
-- time included), so a minute's offset holds for every instant within it.
zone_minutes as (
    select
        time_zone,
        utc_minute,
        {{ local_time('utc_minute', 'time_zone') }} - utc_minute as utc_offset
    from (select distinct time_zone, date_trunc('minute', utc_middle) as utc_minute from stretch_middles) as minutes
),

stretches as (
    select
        s.imei,
        s.partition_date,
        s.km,
        {{ working_time_class('s.utc_middle + m.utc_offset') }} as time_class
    from stretch_middles as s
    inner join zone_minutes as m
        on s.time_zone = m.time_zone and date_trunc('minute', s.utc_middle) = m.utc_minute
),

km_shares as (
    select
        imei, partition_date,
        coalesce(sum(km) filter (where time_class = 'working_hours'), 0) / nullif(sum(km), 0) as working_share,
        coalesce(sum(km) filter (where time_class = 'after_hours'), 0) / nullif(sum(km), 0) as after_share,
        coalesce(sum(km) filter (where time_class = 'weekend'), 0) / nullif(sum(km), 0) as weekend_share
    from stretches
    group by imei, partition_date
),

measured as (
    select
        d.*,
        {{ device_zone('z.time_zone') }} as time_zone,
        coalesce(t.trip_count, 0) as trip_count,
        coalesce(t.driving_s, 0) as driving_s,
        coalesce(i.idling_s, 0) as idle_s,
        s.working_share, s.after_share, s.weekend_share
    from days as d
    left join zones as z using (imei)
    left join trips as t using (imei, partition_date)
    left join idling as i using (imei, partition_date)
    left join km_shares as s using (imei, partition_date)
)

select
    partition_date,
    {{ local_date('partition_date', 'time_zone') }} as local_date,
    time_zone,
    platform,
    account,
    -- the vendor's device group, for the team that manages it (Navixy group id, Tracksolid group name)
    g.group_name,
    imei,
    -- a blocked tracker's day is unknown, not idle: every figure of it is null
    case when not tracker_blocked then trip_count end as trip_count,
    case when not tracker_blocked then driving_s end as driving_s,
    case when not tracker_blocked then driving_s + idle_s end as engine_on_s,
    case when not tracker_blocked then idle_s end as idle_s,
    case when not tracker_blocked then idle_s / nullif(driving_s + idle_s, 0) end as idle_share,
    chosen_km as km,
    -- no stretch between fixes to split by (km from trips alone): km stays unsplit (null parts)
    chosen_km * coalesce(working_share, case when chosen_km = 0 then 0 end) as km_working_hours,
    chosen_km * coalesce(after_share, case when chosen_km = 0 then 0 end) as km_after_hours,
    chosen_km * coalesce(weekend_share, case when chosen_km = 0 then 0 end) as km_weekend,
    case when not tracker_blocked then driving_s > 0 end as is_used,
    -- fixes of the day still to come; an open evening parking changes none of the day's figures
    -- (idling stops end within their day)
    is_provisional
from measured
left join (select imei, group_name from {{ ref('dim_devices') }}) as g using (imei)
