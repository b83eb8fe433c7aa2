-- aovx terminals: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select {{ vendor_account() }}, snapshot_date, snapshot_at, terminal_id, terminal_num, imei
from {{ source('raw_aovx', 'terminals') }}
