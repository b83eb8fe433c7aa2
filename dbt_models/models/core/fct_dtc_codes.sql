{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- DTC fault codes Tracksolid pushed (/pushfaultinfo; no poll returns them): one row per code of
-- each report. The OBD-II letter says the system: P powertrain, C chassis, B body, U network.
with codes as (
    select
        r.msg_id,
        r.account,
        r.imei,
        r.partition_date,
        r.reported_at,
        r.fault_at,
        r.fault_count,
        r.lat,
        r.lng,
        unnest(from_json(r.fault_codes_json, '["VARCHAR"]')) as dtc_code
    from {{ ref('stg_tracksolid__push_fault_codes') }} as r
    where true {{ partition_filter('r.partition_date') }}
)

select
    md5(msg_id || '|' || dtc_code || '|' || cast(row_number() over (
        partition by msg_id, dtc_code order by dtc_code) as varchar)) as dtc_id,
    msg_id,
    account,
    imei,
    partition_date,
    reported_at,
    fault_at,
    upper(trim(dtc_code)) as dtc_code,
    case upper(left(trim(dtc_code), 1))
        when 'P' then 'powertrain'
        when 'C' then 'chassis'
        when 'B' then 'body'
        when 'U' then 'network'
        else 'unknown'
    end as dtc_system,
    fault_count as codes_in_report,
    lat,
    lng
from codes
