-- tracksolid pushed OBD readings: renamed; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, event_time as reading_at, pushed_at, received_at,
    vehicle_class, acc_on as ignition_on, status_flags, lat, lng, obd_json
from {{ source('raw_tracksolid', 'push_obd') }}
