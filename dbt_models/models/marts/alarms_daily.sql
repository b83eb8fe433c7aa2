{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Alarm counts per device, UTC day and canonical type; unmapped vendor codes count as 'other'
-- and are also counted separately so a new vendor code is visible.
select
    a.imei,
    a.partition_date,
    a.partition_date as day,
    {{ local_date('a.partition_date', device_zone('any_value(d.time_zone)')) }} as local_date,
    a.canonical_type,
    any_value(a.platform) as platform,
    any_value(a.account) as account,
    count(*) as alarm_count,
    count(*) filter (where not a.is_mapped) as unmapped_count
from {{ ref('fct_alarms') }} as a
left join {{ ref('dim_device_time_zones') }} as d using (imei)
where true {{ partition_filter('a.partition_date') }}
group by a.imei, a.partition_date, a.canonical_type
