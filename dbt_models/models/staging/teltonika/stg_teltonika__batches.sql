-- teltonika batches: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, snapshot_date, snapshot_at, batch_id, batch_type, task_type, objects as tasks,
    objects_processed as tasks_processed, task_file_name as file_name, file_id, task_stats,
    created_time as created_at, updated_time as updated_at
from {{ source('raw_teltonika', 'batches') }}
