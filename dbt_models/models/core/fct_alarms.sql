{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Alarms and events of every platform in one canonical taxonomy (seed alarm_type_map). Codes the
-- map does not know are kept as canonical_type 'other' with is_mapped false, so they are counted
-- rather than dropped and show up in alarms_daily.
with alarms as (
    select
        'tracksolid' as platform, account, imei, partition_date, alarm_at, vendor_code, vendor_name,
        vendor_code as lookup_code, lat, lng, speed_kmh, geofence_id
    from {{ ref('stg_tracksolid__alarms') }}
    where true {{ partition_filter('partition_date') }}
    union all
    select
        'navixy' as platform, account, imei, partition_date, alarm_at, vendor_code, vendor_name,
        -- Navixy reports ignition on and off as one event type; the message tells them apart
        case
            when vendor_code = 'input_change' and vendor_name ilike '%ignition on%' then 'input_change:ignition_on'
            when vendor_code = 'input_change' and vendor_name ilike '%ignition off%' then 'input_change:ignition_off'
            else vendor_code
        end as lookup_code,
        lat, lng, cast(null as double) as speed_kmh, cast(null as varchar) as geofence_id
    from {{ ref('stg_navixy__events') }}
    where true {{ partition_filter('partition_date') }}
)

select
    md5(a.platform || '|' || a.imei || '|' || cast(a.alarm_at as varchar) || '|' || a.lookup_code
        || '|' || cast(row_number() over (
            partition by a.platform, a.imei, a.alarm_at, a.lookup_code order by a.lat, a.lng) as varchar)
    ) as alarm_id,
    a.platform,
    a.account,
    a.imei,
    a.partition_date,
    a.alarm_at,
    coalesce(m.canonical_type, 'other') as canonical_type,
    m.canonical_type is not null as is_mapped,
    a.vendor_code,
    a.vendor_name,
    a.lat,
    a.lng,
    a.speed_kmh,
    a.geofence_id
from alarms as a
left join {{ ref('alarm_type_map') }} as m
    on m.platform = a.platform and m.vendor_code = a.lookup_code
