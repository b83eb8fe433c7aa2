-- The time zone of every device of dim_devices: its vendor's where the vendor has one (Navixy reads
-- every day in its user's zone and names it on each mileage row: the device's latest, else the
-- account's latest), else default_time_zone (FLEET_DEFAULT_TIME_ZONE). A model of its own, not a
-- column of dim_devices, so the dimension builds from snapshots alone.
with navixy_zone as (
    select imei, time_zone
    from {{ ref('stg_navixy__mileage_daily') }}
    where time_zone is not null
    qualify row_number() over (partition by imei order by partition_date desc) = 1
),

navixy_account_zone as (
    select time_zone from {{ ref('stg_navixy__mileage_daily') }}
    where time_zone is not null
    order by partition_date desc
    limit 1
),

vendor_zone as (
    select
        d.imei,
        d.platform,
        case when d.platform = 'navixy' then coalesce(z.time_zone, az.time_zone) end as vendor_time_zone
    from {{ ref('dim_devices') }} as d
    left join navixy_zone as z using (imei)
    left join navixy_account_zone as az on true
)

select
    imei,
    platform,
    vendor_time_zone,
    coalesce(vendor_time_zone, '{{ var('default_time_zone') }}') as time_zone,
    case when vendor_time_zone is not null then 'vendor' else 'configured' end as time_zone_source
from vendor_zone
