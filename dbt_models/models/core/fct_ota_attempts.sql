-- One row per OTA attempt with its latest known status. AOVX reports an attempt again each time
-- it is updated (partitioned by the day of the update), so the latest report wins. Teltonika FOTA
-- exposes no attempt history in the raw layer; its firmware is tracked by dim_device_firmware_daily.
with latest as (
    select *
    from {{ ref('stg_aovx__ota_reports') }}
    qualify row_number() over (partition by attempt_id order by last_update_at desc, partition_date desc) = 1
)

select
    l.attempt_id,
    l.imei,
    'aovx' as firmware_platform,
    d.model_key,
    l.firmware_version as target_version,
    l.status,
    l.status_code,
    l.upgrade_type,
    l.upgrade_mode,
    l.sent_at,
    l.last_update_at,
    cast(l.sent_at as date) as sent_date,
    l.status = 'success' as is_success,
    case when l.status = 'success' then date_diff('second', l.sent_at, l.last_update_at) end as duration_s
from latest as l
left join {{ ref('dim_devices') }} as d using (imei)
