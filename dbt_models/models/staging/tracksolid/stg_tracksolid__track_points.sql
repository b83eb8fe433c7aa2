-- tracksolid track_points: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, partition_date, gps_time, lat, lng, speed_kmh, direction_deg as heading_deg,
    acc_on as ignition_on, satellites, altitude_m, cast(null as double) as vendor_distance_km
from {{ source('raw_tracksolid', 'track_points') }}
