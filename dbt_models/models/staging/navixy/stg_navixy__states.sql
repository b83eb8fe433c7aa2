-- navixy states: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, snapshot_date, snapshot_at, tracker_status, lat, lng, gps_time,
    speed_kmh, ignition_on, ignition_time as ignition_changed_at, connection_status,
    movement_status, battery_pct, gsm_signal_pct,
    greatest(last_update_time, gps_time) as last_seen_at
from {{ source('raw_navixy', 'states') }}
