-- tracksolid devices: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, snapshot_date, snapshot_at, account_id, device_name, model,
    sim as sim_number, iccid, device_group as group_name, vehicle_name, vehicle_number, driver_name,
    enabled, activation_time as activated_at, expiration_time as expires_at, odometer_km
from {{ source('raw_tracksolid', 'devices') }}
