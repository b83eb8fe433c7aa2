-- aovx ota_reports: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, partition_date, attempt_id, terminal_id, imei, status_code, lower(status) as status,
    upgrade_type, upgrade_mode, firmware_version, sent_at, last_update_at
from {{ source('raw_aovx', 'ota_reports') }}
