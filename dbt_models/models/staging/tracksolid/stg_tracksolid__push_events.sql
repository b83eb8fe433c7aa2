-- tracksolid pushed login / logout events: renamed; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, event_time as event_at, received_at, event_type,
    device_timezone
from {{ source('raw_tracksolid', 'push_events') }}
