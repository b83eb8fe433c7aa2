-- navixy events: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }},
    imei, tracker_id, partition_date, event_id, event_time as alarm_at, event_type as vendor_code,
    message as vendor_name, lat, lng, track_id, emergency
from {{ source('raw_navixy', 'events') }}
