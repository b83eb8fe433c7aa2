{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Alarms and events of every platform in one canonical taxonomy (seed alarm_type_map). Codes the
-- map does not know are kept as canonical_type 'other' with is_mapped false, so they are counted
-- rather than dropped and show up in alarms_daily.
--
-- Tracksolid alarms arrive twice: polled (jimi.device.alarm.list) and pushed (/pushalarm, minutes
-- earlier). Both were mapped to the same columns at load (BUG-01: alertTypeId / alarmTypeName /
-- alertTime when polled, alarmType / alarmName / gateTime when pushed), so one event is one match
-- key: imei + alarm type + alarm time (to the second). The type is the canonical one where the map
-- knows the code (a push may spell a code another way than the poll) and the vendor code where it
-- does not. Two alarms of one key (rare, same second) stay two: the nth polled matches the nth
-- pushed. The polled row is kept where both exist (it carries speed and geofence); received_via
-- says which source saw it.
with tracksolid_sources as (
    select
        'poll' as received_via, account, imei, partition_date, alarm_at, vendor_code, vendor_name, lat, lng,
        speed_kmh, geofence_id
    from {{ ref('stg_tracksolid__alarms') }}
    where true {{ partition_filter('partition_date') }}
    union all
    select
        'push' as received_via, account, imei, partition_date, alarm_at, vendor_code, vendor_name, lat, lng,
        speed_kmh, geofence_id
    from {{ ref('stg_tracksolid__push_alarms') }}
    where true {{ partition_filter('partition_date') }}
),

tracksolid_matched as (
    select
        s.*,
        coalesce(m.canonical_type, 'code:' || s.vendor_code) as match_type,
        row_number() over (
            partition by s.received_via, s.imei, s.alarm_at, coalesce(m.canonical_type, 'code:' || s.vendor_code)
            order by s.vendor_code, s.lat, s.lng
        ) as occurrence
    from tracksolid_sources as s
    left join {{ ref('alarm_type_map') }} as m
        on m.platform = 'tracksolid' and m.vendor_code = s.vendor_code
),

tracksolid as (
    select
        *,
        -- 'poll' sorts before 'push': the polled row of a matched pair is the one kept.
        row_number() over (
            partition by imei, alarm_at, match_type, occurrence order by received_via
        ) as source_rank,
        string_agg(received_via, '+') over (
            partition by imei, alarm_at, match_type, occurrence order by received_via
            rows between unbounded preceding and unbounded following
        ) as received_via_all
    from tracksolid_matched
),

alarms as (
    select
        'tracksolid' as platform, account, imei, partition_date, alarm_at, vendor_code, vendor_name,
        vendor_code as lookup_code, lat, lng, speed_kmh, geofence_id, received_via_all as received_via
    from tracksolid
    where source_rank = 1
    union all
    select
        'navixy' as platform, account, imei, partition_date, alarm_at, vendor_code, vendor_name,
        -- Navixy reports ignition on and off as one event type; the message tells them apart
        case
            when vendor_code = 'input_change' and vendor_name ilike '%ignition on%' then 'input_change:ignition_on'
            when vendor_code = 'input_change' and vendor_name ilike '%ignition off%' then 'input_change:ignition_off'
            else vendor_code
        end as lookup_code,
        lat, lng, cast(null as double) as speed_kmh,
        -- the zone of a zone event: its message ends with the zone's name ("...: Entered zone X")
        case
            when vendor_code in ('inzone', 'outzone') then nullif(regexp_extract(vendor_name, ' zone (.+)$', 1), '')
        end as geofence_id,
        'poll' as received_via
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
    a.geofence_id,
    a.received_via
from alarms as a
left join {{ ref('alarm_type_map') }} as m
    on m.platform = a.platform and m.vendor_code = a.lookup_code
