{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set min_date = var('min_date', none) -%}
{%- set max_date = var('max_date', none) -%}
{%- set lookahead = var('stop_lookahead_days') -%}
{%- set drift_km = '(' ~ var('stop_max_drift_m') ~ ' / 1000.0)' -%}
-- Stops from two sources side by side: the vendor's parking report where the vendor has one
-- (Tracksolid) and stops derived from track points for every platform. A derived stop is a run of
-- stationary fixes (speed <= stop_speed_kmh) at one place (within stop_max_drift_m of the previous
-- fix), kept from stop_min_duration_s on. It ends at the departure: the next fix, when that one is
-- moving and comes within stop_max_gap_s or from the stop's own place; after a longer silence that
-- ends elsewhere (it moved unseen), at its last fix. A stop is ONE row however many UTC midnights it
-- runs past (the evening parking ends the next morning, a weekend parking on Monday), in the
-- partition of the day it started; a stop with no departure in the loaded data yet is `is_open`,
-- ended at its last fix so far.
--
-- Incremental window (why a day's run reads and writes more than its days): a run for
-- [min_date, max_date] derives the stops that START in the window from the fixes of the window,
-- of the day before (is the window's first stationary run a new stop or the continuation of one?)
-- and of up to stop_lookahead_days loaded after it (where a re-run day's last stop ends). A stop
-- still open when its own day was built is finished by a later run: every run takes the open stops
-- of the stop_lookahead_days before the window from this table, extends or ends them with the
-- window's fixes and rewrites their partitions (their other rows copied unchanged). So loading day
-- D+1 also corrects day D's evening parking, and a Friday parking is extended on Saturday and
-- Sunday and ended on Monday. Downstream marts rewrite the partitions of every stop that reaches
-- into the window (see parking_events, parking_daily).
--
-- Ignition separates parking (off) from idling (on all along): from the fixes where the vendor
-- sends it with them (Tracksolid), from ignition events and state snapshots where it does not
-- (Navixy: on at the stop's start and not switched off during it = idling); with no ignition from
-- any source of the vendor the stop kind is `unknown`, never silently parking.
with points as (
    select
        platform, account, imei, partition_date, gps_time, lat, lng, ignition_on,
        coalesce(speed_kmh <= {{ var('stop_speed_kmh') }}, false) as is_stationary
    from {{ ref('fct_track_points') }}
    where true
      {%- if min_date is not none %} and partition_date >= date '{{ min_date }}' - 1{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}' + {{ lookahead }}{% endif %}
),

{% if max_date is not none -%}
-- After the window only the fixes up to each device's first movement matter (they end its last stop).
first_move_after_window as (
    select imei, min(gps_time) as moved_at
    from points
    where partition_date > date '{{ max_date }}' and not is_stationary
    group by imei
),

fixes as (
    select p.*
    from points as p
    left join first_move_after_window as m using (imei)
    where p.partition_date <= date '{{ max_date }}' or m.moved_at is null or p.gps_time <= m.moved_at
),
{%- else -%}
fixes as (select * from points),
{%- endif %}

neighbours as (
    select
        *,
        lag(gps_time) over w as prev_gps_time,
        lag(is_stationary) over w as prev_is_stationary,
        lag(lat) over w as prev_lat,
        lag(lng) over w as prev_lng,
        lead(gps_time) over w as next_gps_time,
        lead(is_stationary) over w as next_is_stationary,
        lead(lat) over w as next_lat,
        lead(lng) over w as next_lng
    from fixes
    window w as (partition by imei order by gps_time)
),

-- A stationary fix starts a stop after a moving fix (or one of unknown speed) or when the device
-- reappears somewhere else; the device's first fix in what was read starts a stop whose real start
-- is unknown (it is the continuation of one from before, matched below or left out). The running
-- sum numbers the stops over the stationary fixes alone (about a third of them).
flagged as (
    select
        *,
        prev_gps_time is null as is_first_read,
        case
            when prev_gps_time is null or not prev_is_stationary
                 or {{ haversine_km('prev_lat', 'prev_lng', 'lat', 'lng') }} > {{ drift_km }}
            then 1 else 0
        end as starts_stop,
        case
            when next_gps_time is null then gps_time
            -- a departure from the very place of the stop ends it however long the silence
            -- before it: the vehicle stood there all along (a parked device that sent nothing, or
            -- whose fixes of the stop are still in its buffer)
            when not next_is_stationary
                 and (date_diff('second', gps_time, next_gps_time) <= {{ var('stop_max_gap_s') }}
                      or {{ haversine_km('lat', 'lng', 'next_lat', 'next_lng') }} <= {{ drift_km }})
            then next_gps_time
            else gps_time
        end as covered_until
    from neighbours
),

runs as (
    select
        imei,
        any_value(platform) as platform,
        any_value(account) as account,
        min(gps_time) as started_at,
        max(covered_until) as ended_at,
        max(gps_time) as last_fix_at,
        bool_or(next_gps_time is null) as is_open,
        bool_or(is_first_read) as start_unknown,
        avg(lat) as lat,
        avg(lng) as lng,
        case
            when bool_and(ignition_on) then true
            when bool_or(ignition_on) is null then null
            else false
        end as fix_ignition_on,
        count(*) as fix_count_in_stop
    from (
        select *, sum(starts_stop) over (partition by imei order by gps_time
                                         rows between unbounded preceding and current row) as stop_seq
        from flagged
        where is_stationary
    ) as stationary
    group by imei, stop_seq
),

-- Ignition evidence where the fixes carry none: Navixy's ignition on/off events and the ignition
-- of its state snapshots (the value and when it last changed).
ignition_evidence as (
    select imei, alarm_at as observed_at, canonical_type = 'ignition_on' as ignition_on
    from {{ ref('fct_alarms') }}
    where platform = 'navixy' and canonical_type in ('ignition_on', 'ignition_off')
      {%- if min_date is not none %} and partition_date >= date '{{ min_date }}' - 2{% endif %}
      {%- if max_date is not none %} and partition_date <= date '{{ max_date }}' + {{ lookahead }}{% endif %}
    union all
    select imei, ignition_changed_at, ignition_on
    from {{ ref('stg_navixy__states') }}
    where ignition_changed_at is not null and ignition_on is not null
),

-- New stops of the window: their start was seen (a break before them) and lies in the window.
new_runs as (
    select * from runs
    where not start_unknown
      and date_diff('second', started_at, ended_at) >= {{ var('stop_min_duration_s') }}
      {%- if min_date is not none %} and started_at >= date '{{ min_date }}'{% endif %}
      {%- if max_date is not none %} and started_at < date '{{ max_date }}' + 1{% endif %}
),

-- Ignition at a stop's start (the latest evidence up to stop_match_tolerance_s after it, which
-- takes in a switch-off the fixes place a little before the stop) and whether it went off later.
new_run_ignition as (
    select
        r.imei, r.started_at,
        arg_max(e.ignition_on, e.observed_at) filter (
            where e.observed_at <= r.started_at + interval {{ var('stop_match_tolerance_s') }} second
        ) as on_at_start,
        bool_or(not e.ignition_on) filter (
            where e.observed_at > r.started_at + interval {{ var('stop_match_tolerance_s') }} second
        ) as off_during
    from new_runs as r
    join ignition_evidence as e
        on e.imei = r.imei
       and e.observed_at >= r.started_at - interval 2 day
       and e.observed_at < r.ended_at
    group by r.imei, r.started_at
),

derived as (
    select
        'derived' as stop_source, r.platform, r.account, r.imei, cast(r.started_at as date) as partition_date,
        r.started_at, r.ended_at, r.lat, r.lng,
        coalesce(
            r.fix_ignition_on,
            case
                when i.off_during then false
                when i.on_at_start is not null then i.on_at_start
            end
        ) as ignition_on,
        r.fix_count_in_stop, r.is_open
    from new_runs as r
    left join new_run_ignition as i using (imei, started_at)
),

vendor as (
    select
        'vendor' as stop_source, 'tracksolid' as platform, account, imei, partition_date,
        started_at, ended_at, lat, lng, ignition_on, cast(null as bigint) as fix_count_in_stop,
        false as is_open
    from {{ ref('stg_tracksolid__parking') }}
    where true {{ partition_filter('partition_date') }}
),

fresh as (
    select
        md5(stop_source || '|' || imei || '|' || cast(started_at as varchar)) as stop_id,
        stop_source, platform, account, imei, partition_date, started_at, ended_at,
        date_diff('second', started_at, ended_at) as duration_s,
        case when ignition_on then 'idling' when not ignition_on then 'parking' else 'unknown' end
            as stop_kind,
        ignition_on, lat, lng, fix_count_in_stop, is_open
    from (
        select * from derived
        union all
        select * from vendor
    ) as both_sources
)

{#- Stops left open by earlier runs; skipped on a table built before is_open or account existed
    (the first run after the upgrade adds the column). -#}
{%- set existing = (adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list)
    if is_incremental() else [] %}
{%- set carry_in = is_incremental() and min_date is not none and 'is_open' in existing and 'account' in existing %}
{%- if carry_in %},

-- An open stop continues into the window when a run read here holds its last fix, or (device
-- silent in between) when the device's first run read here is at the same place.
open_before as (
    select * from {{ this }}
    where is_open and stop_source = 'derived'
      and partition_date < date '{{ min_date }}'
      and partition_date >= date '{{ min_date }}' - {{ lookahead }}
),

continued as (
    select
        o.stop_id, o.stop_source, o.platform, o.account, o.imei, o.partition_date, o.started_at,
        greatest(o.ended_at, r.ended_at) as ended_at,
        date_diff('second', o.started_at, greatest(o.ended_at, r.ended_at)) as duration_s,
        o.stop_kind, o.ignition_on, o.lat, o.lng,
        o.fix_count_in_stop + (
            select count(*) from flagged as f
            where f.imei = o.imei and f.is_stationary and f.gps_time > o.ended_at and f.gps_time <= r.last_fix_at
        ) as fix_count_in_stop,
        r.is_open
    from open_before as o
    join runs as r
        on r.imei = o.imei
       and (
            (r.started_at <= o.ended_at and r.last_fix_at >= o.ended_at)
            or (r.start_unknown and r.started_at > o.ended_at
                and {{ haversine_km('o.lat', 'o.lng', 'r.lat', 'r.lng') }} <= {{ drift_km }})
       )
)

select * from fresh
union all
select * from continued
union all
select * from {{ this }}
where partition_date in (select partition_date from continued)
  and stop_id not in (select stop_id from continued)
{%- else %}

select * from fresh
{%- endif %}
