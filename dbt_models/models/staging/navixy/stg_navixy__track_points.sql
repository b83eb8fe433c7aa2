-- navixy track_points: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, partition_date, gps_time, lat, lng, speed_kmh, heading_deg,
    cast(null as boolean) as ignition_on, satellites, altitude_m,
    distance_from_previous_km as vendor_distance_km, parking as is_parking
from {{ source('raw_navixy', 'track_points') }}
