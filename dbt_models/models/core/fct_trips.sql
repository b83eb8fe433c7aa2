{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Trips as each platform reports them, partitioned by the UTC day they start.
select
    'tracksolid' as platform, account, imei, partition_date,
    md5(imei || '|' || cast(started_at as varchar)) as trip_id,
    started_at, ended_at, duration_s, distance_km, avg_speed_kmh, max_speed_kmh, idle_s
from {{ ref('stg_tracksolid__trips') }}
where true {{ partition_filter('partition_date') }}
union all
select
    'navixy' as platform, account, imei, partition_date,
    md5(imei || '|' || cast(started_at as varchar)) as trip_id,
    started_at, ended_at, duration_s, distance_km, avg_speed_kmh, max_speed_kmh,
    cast(null as bigint) as idle_s
from {{ ref('stg_navixy__trips') }}
where true {{ partition_filter('partition_date') }}
