{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- Stops from two sources side by side: the vendor's parking report where the vendor has one
-- (Tracksolid) and stops derived from track points for every platform. A derived stop is a run of
-- fixes at or below stop_speed_kmh with no gap above stop_max_gap_s; it ends at the next fix
-- (the departure) when that comes within the gap, and is kept from stop_min_duration_s on. Runs
-- are cut at UTC midnight so a one-day run is self-contained. Ignition, where the vendor sends
-- it, separates parking (off or unknown) from idling (on all along).
with points as (
    select
        platform, imei, partition_date, gps_time, lat, lng, ignition_on, seconds_from_prev,
        speed_kmh <= {{ var('stop_speed_kmh') }} as is_stationary
    from {{ ref('fct_track_points') }}
    where true {{ partition_filter('partition_date') }}
),

-- A stationary fix starts a stop after a moving fix (or one of unknown speed), after a gap, or as
-- the day's first. Finding its neighbours takes every fix of the day, but numbering the stops
-- takes only the stationary ones (about a third), so the second window sorts those alone.
flagged as (
    select
        *,
        lead(gps_time) over w as next_gps_time,
        row_number() over w = 1 as is_first_fix,
        case
            when lag(is_stationary) over w is distinct from true
                 or seconds_from_prev > {{ var('stop_max_gap_s') }}
            then 1 else 0
        end as starts_stop
    from points
    window w as (partition by imei, partition_date order by gps_time)
),

grouped as (
    select
        *,
        sum(starts_stop) over (partition by imei, partition_date order by gps_time
                               rows between unbounded preceding and current row) as stop_seq,
        case
            when next_gps_time is not null
                 and date_diff('second', gps_time, next_gps_time) <= {{ var('stop_max_gap_s') }}
            then next_gps_time else gps_time
        end as covered_until
    from flagged
    where is_stationary
),

derived as (
    select
        'derived' as stop_source, any_value(platform) as platform, imei, partition_date,
        min(gps_time) as started_at,
        max(covered_until) as ended_at,
        avg(lat) as lat, avg(lng) as lng,
        case
            when bool_and(ignition_on) then true
            when bool_or(ignition_on) is null then null
            else false
        end as ignition_on,
        count(*) as fix_count_in_stop,
        -- the stop the day opens with, stationary since before midnight: it started on an earlier
        -- day, where it was already counted
        bool_or(is_first_fix) and min(gps_time) < min(partition_date) + interval {{ var('stop_max_gap_s') }} second
            as continues_previous_day
    from grouped
    group by imei, partition_date, stop_seq
),

vendor as (
    select
        'vendor' as stop_source, 'tracksolid' as platform, imei, partition_date,
        started_at, ended_at, lat, lng, ignition_on, cast(null as bigint) as fix_count_in_stop,
        false as continues_previous_day
    from {{ ref('stg_tracksolid__parking') }}
    where true {{ partition_filter('partition_date') }}
),

stops as (
    select * from derived
    where date_diff('second', started_at, ended_at) >= {{ var('stop_min_duration_s') }}
    union all
    select * from vendor
)

select
    md5(stop_source || '|' || imei || '|' || cast(started_at as varchar)) as stop_id,
    stop_source,
    platform,
    imei,
    partition_date,
    started_at,
    ended_at,
    date_diff('second', started_at, ended_at) as duration_s,
    case when ignition_on then 'idling' else 'parking' end as stop_kind,
    ignition_on,
    lat,
    lng,
    fix_count_in_stop,
    continues_previous_day
from stops
