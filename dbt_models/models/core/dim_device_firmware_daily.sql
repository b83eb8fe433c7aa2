-- Firmware and status of each device on each snapshot day. The day spine is the platforms' daily
-- device snapshots; the version is Teltonika FOTA's snapshot of that day, else the version of the
-- device's latest successful AOVX attempt by the end of that day. Jimi devices have no firmware
-- platform: their version is null.
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

aovx_success as (
    select imei, last_update_at, target_version
    from {{ ref('fct_ota_attempts') }}
    where is_success
),

aovx_version as (
    select s.imei, s.snapshot_date, a.target_version as firmware_version
    from spine as s
    join aovx_success as a
        on a.imei = s.imei and a.last_update_at < s.snapshot_date + interval 1 day
    qualify row_number() over (partition by s.imei, s.snapshot_date order by a.last_update_at desc) = 1
)

select
    s.imei,
    s.snapshot_date,
    d.platform,
    d.firmware_platform,
    d.model_key,
    coalesce(t.firmware_version, a.firmware_version) as firmware_version,
    coalesce(t.activity_status, n.connection_status) as device_status
from spine as s
join {{ ref('dim_devices') }} as d using (imei)
left join teltonika as t using (imei, snapshot_date)
left join aovx_version as a using (imei, snapshot_date)
left join navixy_state as n using (imei, snapshot_date)
