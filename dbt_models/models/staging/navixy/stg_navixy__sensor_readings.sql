-- navixy sensor_readings: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, snapshot_date, snapshot_at, source, sensor, label, sensor_type,
    value_num, value_text, units, updated_time as updated_at
from {{ source('raw_navixy', 'sensor_readings') }}
