-- teltonika groups: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, snapshot_date, snapshot_at, group_id, name as group_name, company_id, company_name,
    firmware_file_id, configuration_file_id
from {{ source('raw_teltonika', 'groups') }}
