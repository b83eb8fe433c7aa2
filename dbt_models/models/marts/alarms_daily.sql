{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Alarm counts per device, UTC day and canonical type; unmapped vendor codes count as 'other'
-- and are also counted separately so a new vendor code is visible.
select
    imei,
    partition_date,
    partition_date as day,
    canonical_type,
    any_value(platform) as platform,
    any_value(account) as account,
    count(*) as alarm_count,
    count(*) filter (where not is_mapped) as unmapped_count
from {{ ref('fct_alarms') }}
where true {{ partition_filter('partition_date') }}
group by imei, partition_date, canonical_type
