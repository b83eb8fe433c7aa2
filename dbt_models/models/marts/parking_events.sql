{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- One row per parking, one source per device: the vendor's report where the platform has one
-- (Tracksolid), stops derived from track points otherwise (Navixy).
select
    stop_id, imei, platform, stop_source, partition_date, partition_date as day,
    started_at, ended_at, duration_s, ignition_on, lat, lng
from {{ ref('fct_stops') }}
where stop_kind = 'parking'
  and not continues_previous_day
  and stop_source = case when platform = 'tracksolid' then 'vendor' else 'derived' end
  {{ partition_filter('partition_date') }}
