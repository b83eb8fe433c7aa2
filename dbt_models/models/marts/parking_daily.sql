{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Parkings per device and UTC day from parking_events (one source per device), by start day.
select
    imei,
    partition_date,
    partition_date as day,
    any_value(platform) as platform,
    any_value(stop_source) as stop_source,
    count(*) as parking_count,
    sum(duration_s) as parking_s,
    max(duration_s) as longest_parking_s
from {{ ref('parking_events') }}
where true {{ partition_filter('partition_date') }}
group by imei, partition_date
