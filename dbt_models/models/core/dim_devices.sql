-- One row per IMEI across vendors, from each platform's latest snapshot. Firmware comes from the
-- firmware platform that manages the device (Teltonika FOTA's current version, else the version
-- of AOVX's latest successful OTA attempt, daily reports and history); Jimi devices have none.
with tracksolid as (
    select
        imei, 'tracksolid' as platform, account, device_name, model, account_id, group_name,
        sim_number, activated_at, enabled as is_enabled, snapshot_date
    from {{ ref('stg_tracksolid__devices') }}
    qualify row_number() over (partition by imei order by snapshot_at desc) = 1
),

navixy as (
    select
        imei, 'navixy' as platform, account, device_name, model,
        cast(null as varchar) as account_id, cast(group_id as varchar) as group_name,
        sim_number, activated_at, not blocked as is_enabled, snapshot_date
    from {{ ref('stg_navixy__trackers') }}
    qualify row_number() over (partition by imei order by snapshot_at desc) = 1
),

platform_devices as (
    select * from tracksolid
    union all
    select * from navixy where imei not in (select imei from tracksolid)
),

last_seen as (
    select imei, max(last_seen_at) as last_seen_at
    from (
        select imei, last_seen_at from {{ ref('stg_tracksolid__positions') }}
        union all
        select imei, last_seen_at from {{ ref('stg_navixy__states') }}
        union all
        select imei, last_seen_at from {{ ref('stg_teltonika__devices') }}
    )
    group by imei
),

teltonika as (
    select imei, firmware_version, sim_number
    from {{ ref('stg_teltonika__devices') }}
    qualify row_number() over (partition by imei order by snapshot_at desc) = 1
),

aovx_reports as (
    select imei, status_code, firmware_version, last_update_at from {{ ref('stg_aovx__ota_reports') }}
    union all
    select imei, status_code, firmware_version, last_update_at from {{ ref('stg_aovx__ota_history') }}
),

-- AOVX manages the terminals it lists and any device it reported an attempt of; its firmware is
-- the target of the latest successful (status 3) attempt, null when none is known.
aovx as (
    select imei, max_by(firmware_version, last_update_at) filter (where status_code = 3) as firmware_version
    from (
        select imei, status_code, firmware_version, last_update_at from aovx_reports
        union all
        select imei, null as status_code, null as firmware_version, null as last_update_at
        from {{ ref('stg_aovx__terminals') }}
    )
    where imei is not null
    group by imei
)

select
    d.imei,
    d.platform,
    d.account,
    case
        when t.imei is not null then 'teltonika'
        when a.imei is not null then 'aovx'
    end as firmware_platform,
    d.device_name,
    d.model,
    {{ model_key('d.model') }} as model_key,
    d.account_id,
    d.group_name,
    coalesce(d.sim_number, t.sim_number) as sim_number,
    d.activated_at,
    d.is_enabled,
    l.last_seen_at,
    coalesce(t.firmware_version, a.firmware_version) as current_firmware,
    d.snapshot_date as last_snapshot_date
from platform_devices as d
left join last_seen as l using (imei)
left join teltonika as t using (imei)
left join aovx as a using (imei)
