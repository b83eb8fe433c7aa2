-- navixy trips: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, partition_date, track_id, start_time as started_at, end_time as ended_at,
    duration_s, distance_km, avg_speed_kmh, max_speed_kmh, point_count
from {{ source('raw_navixy', 'trips') }}
