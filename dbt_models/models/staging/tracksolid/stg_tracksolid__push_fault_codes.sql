-- tracksolid pushed DTC fault code reports: renamed; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, report_time as reported_at, fault_event_time as fault_at,
    received_at, fault_codes as fault_codes_json, fault_count, status_flags, lat, lng
from {{ source('raw_tracksolid', 'push_fault_codes') }}
