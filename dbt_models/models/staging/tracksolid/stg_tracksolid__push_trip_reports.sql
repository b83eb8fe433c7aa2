-- tracksolid pushed trip reports: renamed; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, report_time as reported_at, received_at, trip_seq,
    report_kind, begin_time as start_at, end_time as end_at, distance_km, fuel_l, idle_s,
    begin_lat as start_lat, begin_lng as start_lng, end_lat, end_lng
from {{ source('raw_tracksolid', 'push_trip_reports') }}
