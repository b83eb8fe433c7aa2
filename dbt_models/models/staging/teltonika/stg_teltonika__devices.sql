-- teltonika devices: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, snapshot_date, snapshot_at, serial, model, current_firmware as firmware_version,
    activity_status, company_id, company_name, group_id, group_name, iccid, imsi, sim_msisdn as sim_number,
    seen_at as last_seen_at, first_login_time as activated_at
from {{ source('raw_teltonika', 'devices') }}
