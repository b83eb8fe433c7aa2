-- tracksolid parking: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, partition_date, start_time as started_at, end_time as ended_at, duration_s,
    acc_on as ignition_on, lat, lng
from {{ source('raw_tracksolid', 'parking') }}
