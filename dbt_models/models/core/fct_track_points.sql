{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Every GPS fix of every platform, with the haversine distance from the previous fix of the same
-- device on the same UTC day (the day boundary keeps a one-day run self-contained).
with points as (
    select 'tracksolid' as platform, account, imei, partition_date, gps_time, lat, lng, speed_kmh,
           heading_deg, ignition_on, satellites, altitude_m, vendor_distance_km
    from {{ ref('stg_tracksolid__track_points') }}
    where true {{ partition_filter('partition_date') }}
    union all
    select 'navixy' as platform, account, imei, partition_date, gps_time, lat, lng, speed_kmh,
           heading_deg, ignition_on, satellites, altitude_m, vendor_distance_km
    from {{ ref('stg_navixy__track_points') }}
    where true {{ partition_filter('partition_date') }}
),

with_previous as (
    select
        *,
        lag(lat) over w as prev_lat,
        lag(lng) over w as prev_lng,
        lag(gps_time) over w as prev_gps_time
    from points
    window w as (partition by imei, partition_date order by gps_time)
)

select
    platform, account, imei, partition_date, gps_time, lat, lng, speed_kmh, heading_deg, ignition_on,
    satellites, altitude_m, vendor_distance_km,
    coalesce({{ haversine_km('prev_lat', 'prev_lng', 'lat', 'lng') }}, 0.0) as distance_from_prev_km,
    coalesce(date_diff('second', prev_gps_time, gps_time), 0) as seconds_from_prev
from with_previous
