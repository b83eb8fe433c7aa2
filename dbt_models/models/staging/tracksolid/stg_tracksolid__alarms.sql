-- tracksolid alarms: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, partition_date, alarm_time as alarm_at, alarm_type_id as vendor_code,
    alarm_type_name as vendor_name, lat, lng, speed_kmh, geofence_id
from {{ source('raw_tracksolid', 'alarms') }}
