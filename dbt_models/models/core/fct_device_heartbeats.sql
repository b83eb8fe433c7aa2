{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Device health from the heartbeats Tracksolid pushes (no poll returns them): one row per device
-- and UTC day it sent any, with its last heartbeat and the power level and GSM signal it reported
-- then. The join point of device-health marts: (imei, partition_date).
select
    account,
    imei,
    partition_date,
    count(*) as heartbeats,
    min(heartbeat_at) as first_heartbeat_at,
    max(heartbeat_at) as last_heartbeat_at,
    arg_max(power_level_pct, heartbeat_at) as last_power_level_pct,
    min(power_level_pct) as min_power_level_pct,
    arg_max(gsm_signal, heartbeat_at) as last_gsm_signal,
    min(gsm_signal) as min_gsm_signal,
    arg_max(is_charging, heartbeat_at) as last_is_charging,
    arg_max(ignition_on, heartbeat_at) as last_ignition_on
from {{ ref('stg_tracksolid__push_heartbeats') }}
where true {{ partition_filter('partition_date') }}
group by account, imei, partition_date
