-- teltonika tasks: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }},
    snapshot_date, snapshot_at, task_id, imei, model, batch_id, task_type, status_id, status_name,
    attempt_count, execution_time_s, file_id, file_name, firmware_version, message,
    created_time as created_at, updated_time as updated_at, status_changed_time as status_changed_at
from {{ source('raw_teltonika', 'tasks') }}
