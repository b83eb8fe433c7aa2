-- tracksolid positions: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, snapshot_date, snapshot_at, device_name, gps_time, heartbeat_time as last_seen_at,
    lat, lng, speed_kmh, direction_deg as heading_deg, acc_on as ignition_on, moving, satellites, odometer_km,
    power_v, battery_pct, position_type
from {{ source('raw_tracksolid', 'positions') }}
