{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Kilometres per device and UTC day from every source, one chosen figure and a flag when the
-- sources disagree. Navixy's own mileage report counts LOCAL days, so the odometer figure comes
-- from the per-fix odometer deltas Navixy sends with each track point (summed per UTC day).
-- Chosen: odometer (the device's own count) where present, else the platform's trips, else the
-- haversine sum of fixes (a lower bound: straight lines between fixes cut corners). A blocked
-- Navixy tracker's data is refused by the vendor, so it has a row per day of the window with no km
-- (null, not 0: unknown) and tracker_blocked set, instead of vanishing.
with from_points as (
    select
        imei, partition_date, any_value(platform) as platform, any_value(account) as account,
        sum(distance_from_prev_km) as points_km,
        sum(vendor_distance_km) as odometer_km,
        count(*) as fix_count
    from {{ ref('fct_track_points') }}
    where true {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

from_trips as (
    select imei, partition_date, any_value(platform) as platform, any_value(account) as account,
           sum(distance_km) as trips_km, count(*) as trip_count
    from {{ ref('fct_trips') }}
    where true {{ partition_filter('partition_date') }}
    group by imei, partition_date
),

joined as (
    select
        coalesce(p.imei, t.imei) as imei,
        coalesce(p.partition_date, t.partition_date) as partition_date,
        coalesce(p.platform, t.platform) as platform,
        coalesce(p.account, t.account) as account,
        t.trips_km, coalesce(t.trip_count, 0) as trip_count,
        p.points_km, coalesce(p.fix_count, 0) as fix_count,
        p.odometer_km
    from from_points as p
    full outer join from_trips as t
        on p.imei = t.imei and p.partition_date = t.partition_date
),

unseen_movement as (
    {{ device_days_with_unseen_movement() }}
),

blocked as (
    select imei, platform, account from {{ ref('dim_devices') }}
    where platform = 'navixy' and not is_enabled
),

blocked_days as (
    select b.imei, d.partition_date, b.platform, b.account
    from blocked as b
    cross join (select distinct partition_date from joined) as d
    anti join joined as j on j.imei = b.imei and j.partition_date = d.partition_date
),

chosen as (
    select
        *,
        case
            when odometer_km is not null then 'odometer'
            when trips_km is not null then 'trips'
            else 'track_points'
        end as chosen_source,
        coalesce(odometer_km, trips_km, points_km, 0.0) as chosen_km,
        false as tracker_blocked
    from joined
    union all by name
    select
        imei, partition_date, platform, account, 0 as trip_count, 0 as fix_count,
        'none' as chosen_source, cast(null as double) as chosen_km, true as tracker_blocked
    from blocked_days
)

select
    imei,
    partition_date,
    partition_date as day,
    {{ local_date('partition_date', device_zone('z.time_zone')) }} as local_date,
    platform,
    account,
    -- the vendor's device group, for the team that manages it (Navixy group id, Tracksolid group name)
    g.group_name,
    trips_km,
    trip_count,
    points_km,
    fix_count,
    odometer_km,
    chosen_km,
    chosen_source,
    tracker_blocked,
    -- every available source within the tolerance of the chosen figure (1 km floor: short days)
    coalesce(
        greatest(
            abs(coalesce(trips_km, chosen_km) - chosen_km),
            abs(coalesce(points_km, chosen_km) - chosen_km),
            abs(coalesce(odometer_km, chosen_km) - chosen_km)
        ) > greatest({{ var('mileage_tolerance_share') }} * chosen_km, 1.0),
        false
    ) as sources_disagree,
    -- fixes of the day still to come (late uploads): the track-point figures can still change
    exists(
        select 1 from unseen_movement as u where u.imei = chosen.imei and u.partition_date = chosen.partition_date
    ) as is_provisional
from chosen
left join (select imei, time_zone from {{ ref('dim_device_time_zones') }}) as z using (imei)
left join (select imei, group_name from {{ ref('dim_devices') }}) as g using (imei)
