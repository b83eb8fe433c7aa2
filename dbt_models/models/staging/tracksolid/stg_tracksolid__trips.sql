-- tracksolid trips: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, partition_date, start_time as started_at, end_time as ended_at, duration_s,
    distance_km, avg_speed_kmh, max_speed_kmh, idle_s
from {{ source('raw_tracksolid', 'trips') }}
