{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Parking and ignition-on idling per device and UTC day, from parking_events, by start day.
-- Sums of seconds are cast to BIGINT: DuckDB sums integers as HUGEINT, which Parquet stores as DOUBLE.
select
    imei,
    partition_date,
    partition_date as day,
    any_value(platform) as platform,
    case when count(distinct stop_source) > 1 then 'vendor+derived' else any_value(stop_source) end
        as stop_source,
    count(*) filter (where stop_kind = 'parking') as parking_count,
    cast(coalesce(sum(duration_s) filter (where stop_kind = 'parking'), 0) as bigint) as parking_s,
    coalesce(max(duration_s) filter (where stop_kind = 'parking'), 0) as longest_parking_s,
    cast(coalesce(sum(night_s) filter (where stop_kind = 'parking'), 0) as bigint) as night_parking_s,
    count(*) filter (where stop_kind = 'parking' and is_overnight) as overnight_parking_count,
    count(*) filter (where stop_kind = 'idling') as idling_count,
    cast(coalesce(sum(duration_s) filter (where stop_kind = 'idling'), 0) as bigint) as idling_s
from {{ ref('parking_events') }}
where true {{ partition_filter('partition_date') }}
group by imei, partition_date
