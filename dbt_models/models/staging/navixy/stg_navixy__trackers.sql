-- navixy trackers: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, snapshot_date, snapshot_at, label as device_name, group_id, model,
    phone as sim_number, blocked, cast(created_date as timestamp) as activated_at,
    cast(tariff_end_date as timestamp) as expires_at
from {{ source('raw_navixy', 'trackers') }}
