-- tracksolid pushed GPS fixes: renamed to the shared vocabulary; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, gps_time, gate_time as platform_received_at, received_at,
    lat, lng, speed_kmh, direction_deg as heading_deg, acc_on as ignition_on, satellites,
    position_type, upload_mode, status_flags, altitude_m, mileage_m
from {{ source('raw_tracksolid', 'push_gps') }}
