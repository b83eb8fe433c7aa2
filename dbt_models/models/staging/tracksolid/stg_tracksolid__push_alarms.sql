-- tracksolid pushed alarms: renamed to the vocabulary of stg_tracksolid__alarms (the push names
-- alarmType / alarmName / gateTime were mapped at load, BUG-01); no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, alarm_time as alarm_at, received_at,
    alarm_type_id as vendor_code, alarm_type_name as vendor_name, lat, lng, speed_kmh, geofence_id, protocol_class,
    alarm_serial_no
from {{ source('raw_tracksolid', 'push_alarms') }}
