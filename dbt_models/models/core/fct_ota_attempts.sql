-- One row per OTA attempt of either firmware platform, with its latest known status.
-- AOVX reports an attempt again each time it is updated, in the daily reports and in the history
-- (both filed by the day of the update): the latest report wins. A Teltonika FOTA firmware task is
-- one attempt; the latest daily snapshot of the tasks holds its latest status.
-- outcome: succeeded | failed (AOVX 4 and -1; FOTA failed, expired, cancelled, completed with
-- errors) | in_progress (AOVX sent or downloading; FOTA pending, running, verifying).
with aovx_reports as (
    select attempt_id, imei, status_code, status, firmware_version, upgrade_type, upgrade_mode,
        sent_at, last_update_at, partition_date
    from {{ ref('stg_aovx__ota_reports') }}
    union all
    select attempt_id, imei, status_code, status, firmware_version, upgrade_type, upgrade_mode,
        sent_at, last_update_at, partition_date
    from {{ ref('stg_aovx__ota_history') }}
),

aovx as (
    select
        attempt_id, imei, 'aovx' as firmware_platform, firmware_version as target_version, status,
        status_code, upgrade_type, upgrade_mode, sent_at, last_update_at,
        case
            when status_code = 3 then 'succeeded'
            when status_code in (4, -1) then 'failed'
            else 'in_progress'
        end as outcome
    from aovx_reports
    qualify row_number() over (partition by attempt_id order by last_update_at desc, partition_date desc) = 1
),

teltonika as (
    select
        cast(task_id as varchar) as attempt_id, imei, 'teltonika' as firmware_platform,
        firmware_version as target_version,
        case status_id
            when 0 then 'pending' when 1 then 'running' when 2 then 'completed'
            when 3 then 'completed_with_errors' when 4 then 'cancelled' when 5 then 'failed'
            when 6 then 'expired' when 8 then 'verifying'
        end as status,
        status_id as status_code, cast(null as varchar) as upgrade_type, cast(null as varchar) as upgrade_mode,
        created_at as sent_at, status_changed_at as last_update_at,
        case
            when status_id = 2 then 'succeeded'
            when status_id in (3, 4, 5, 6) then 'failed'
            else 'in_progress'
        end as outcome
    from {{ ref('stg_teltonika__tasks') }}
    where task_type = 'TxFirmware'
    qualify row_number() over (partition by task_id order by snapshot_at desc) = 1
),

attempts as (
    select * from aovx
    union all
    select * from teltonika
)

select
    a.attempt_id,
    a.imei,
    a.firmware_platform,
    d.model_key,
    a.target_version,
    a.status,
    a.status_code,
    a.outcome,
    a.upgrade_type,
    a.upgrade_mode,
    a.sent_at,
    a.last_update_at,
    cast(a.sent_at as date) as sent_date,
    a.outcome = 'succeeded' as is_success,
    a.outcome = 'failed' as is_failed,
    case when a.outcome = 'succeeded' then date_diff('second', a.sent_at, a.last_update_at) end as duration_s
from attempts as a
left join {{ ref('dim_devices') }} as d using (imei)
