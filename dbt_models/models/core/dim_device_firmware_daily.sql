-- Firmware and status of each device on each snapshot day. The day spine is the platforms' daily
-- device snapshots. Teltonika: FOTA's device snapshot of that day. AOVX (no device list with
-- firmware; its OTA history is the only source): the target of the device's latest successful
-- attempt by the end of that day; without one, the version its earliest attempt upgrades from,
-- i.e. the target its model's rollouts installed before that attempt's target (the model's
-- version line is its attempts' targets in the order they were first sent); null (unknown) when
-- the device has no attempt, or the version before it left AOVX's retention window.
-- Jimi devices have no firmware platform: their version is null.
with spine as (
    select distinct imei, snapshot_date from {{ ref('stg_tracksolid__devices') }}
    union
    select distinct imei, snapshot_date from {{ ref('stg_navixy__trackers') }}
),

teltonika as (
    select imei, snapshot_date, firmware_version, activity_status
    from {{ ref('stg_teltonika__devices') }}
    qualify row_number() over (partition by imei, snapshot_date order by snapshot_at desc) = 1
),

navixy_state as (
    select imei, snapshot_date, connection_status
    from {{ ref('stg_navixy__states') }}
    qualify row_number() over (partition by imei, snapshot_date order by snapshot_at desc) = 1
),

aovx_attempts as (
    select imei, model_key, target_version, sent_at, last_update_at, is_success
    from {{ ref('fct_ota_attempts') }}
    where firmware_platform = 'aovx'
),

aovx_line as (
    select model_key, target_version,
        lag(target_version) over (partition by model_key order by first_sent_at) as previous_version
    from (
        select model_key, target_version, min(sent_at) as first_sent_at
        from aovx_attempts
        group by all
    ) as first_sent
),

aovx_succeeded as (
    select s.imei, s.snapshot_date, a.target_version as firmware_version
    from spine as s
    join aovx_attempts as a
        on a.imei = s.imei and a.is_success and a.last_update_at < s.snapshot_date + interval 1 day
    qualify row_number() over (partition by s.imei, s.snapshot_date order by a.last_update_at desc) = 1
),

aovx_before_first_attempt as (
    select s.imei, s.snapshot_date, l.previous_version as firmware_version
    from spine as s
    join aovx_attempts as a on a.imei = s.imei and a.sent_at < s.snapshot_date + interval 1 day
    join aovx_line as l on l.model_key = a.model_key and l.target_version = a.target_version
    qualify row_number() over (partition by s.imei, s.snapshot_date order by a.sent_at) = 1
)

select
    s.imei,
    s.snapshot_date,
    d.platform,
    d.firmware_platform,
    d.model_key,
    coalesce(t.firmware_version, a.firmware_version, b.firmware_version) as firmware_version,
    coalesce(t.activity_status, n.connection_status) as device_status
from spine as s
join {{ ref('dim_devices') }} as d using (imei)
left join teltonika as t using (imei, snapshot_date)
left join aovx_succeeded as a using (imei, snapshot_date)
left join aovx_before_first_attempt as b using (imei, snapshot_date)
left join navixy_state as n using (imei, snapshot_date)
