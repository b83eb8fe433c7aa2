-- tracksolid pushed heartbeats: renamed to the shared vocabulary; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, heartbeat_time as heartbeat_at, received_at, power_level_pct,
    gsm_signal, acc_on as ignition_on, charging as is_charging, fortified as is_fortified
from {{ source('raw_tracksolid', 'push_heartbeats') }}
