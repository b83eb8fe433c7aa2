{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Stops of long_stop_min_hours (24 h) or more from parking_events, one row each in the partition of
-- the day it started, whatever the ignition: a vehicle left for a day or longer. A stop of
-- long_stop_days (FLEET_LONG_STOP_DAYS) or more is a vehicle not moved for that long, and an open
-- one (no departure loaded yet) is one still standing: its duration is up to its last fix so far
-- and grows with each day loaded. Rewrites the partitions parking_events rewrote (a stop is ended
-- or extended by later days' fixes).
select
    e.stop_id,
    e.partition_date,
    e.day,
    e.local_date,
    e.platform,
    e.account,
    e.imei,
    e.stop_kind,
    e.stop_source,
    e.started_at,
    e.ended_at,
    e.duration_s,
    e.duration_s / 86400.0 as stopped_days,
    e.duration_s >= {{ var('long_stop_days') }} * 86400 as is_not_moved_long,
    e.is_open,
    e.is_provisional,
    e.lat,
    e.lng
from {{ ref('parking_events') }} as e
where e.duration_s >= {{ var('long_stop_min_hours') }} * 3600
  and {{ stop_partitions_reaching_window(ref('parking_events')) }}
