{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
{%- set lookahead = var('stop_lookahead_days') -%}
-- Parking, idling and unknown-ignition stops per device and UTC day, from parking_events. Counts
-- (and the longest parking, overnight parkings) go to the day a stop started; durations are split
-- over the UTC days a stop covers, so an evening parking gives its evening to one day and its
-- night to the next, and a weekend parking fills Saturday and Sunday. A run rewrites the days of
-- the window and every day covered by a stop of the partitions parking_events rewrote (a stop
-- ended or extended by the window's fixes changes the days it covers); each of those days is
-- computed from every stop covering it. Sums of seconds are cast to BIGINT: DuckDB sums integers
-- as HUGEINT, which Parquet stores as DOUBLE.
with rewritten_stops as (
    select partition_date, ended_at from {{ ref('parking_events') }}
    where {{ stop_partitions_reaching_window(ref('parking_events')) }}
),

days as (
    select distinct cast(d as date) as day
    from rewritten_stops,
         unnest(generate_series(partition_date::timestamp, ended_at, interval 1 day)) as t (d)
    {%- if var('min_date', none) is not none and var('max_date', none) is not none %}
    union
    select cast(d as date) from unnest(generate_series(
        date '{{ var('min_date') }}'::timestamp, date '{{ var('max_date') }}'::timestamp, interval 1 day)) as t (d)
    {%- endif %}
),

-- Every stop covering a rewritten day, with the part of it inside that day.
pieces as (
    select
        e.* exclude (day),
        d.day as covered_day,
        greatest(e.started_at, d.day::timestamp) as piece_from,
        least(e.ended_at, d.day + interval 1 day) as piece_to
    from {{ ref('parking_events') }} as e
    join days as d
        on e.partition_date between d.day - {{ lookahead }} and d.day
       and (e.partition_date = d.day or e.ended_at > d.day::timestamp)
),

measured as (
    select
        *,
        greatest(date_diff('second', piece_from, piece_to), 0) as piece_s,
        -- the night hours of the day itself: [00:00, night_end) and [night_start, 24:00)
        greatest(date_diff('second', piece_from,
                                least(piece_to, covered_day + interval {{ var('night_end_hour') }} hour)), 0)
        + greatest(date_diff('second',
                             greatest(piece_from, covered_day + interval {{ var('night_start_hour') }} hour),
                             piece_to), 0)
            as piece_night_s,
        partition_date = covered_day as starts_that_day
    from pieces
),

unseen_movement as (
    {{ device_days_with_unseen_movement() }}
)

select
    m.imei,
    m.covered_day as partition_date,
    m.covered_day as day,
    {{ local_date('m.covered_day', device_zone('any_value(z.time_zone)')) }} as local_date,
    any_value(m.platform) as platform,
    any_value(m.account) as account,
    case when count(distinct m.stop_source) > 1 then 'vendor+derived' else any_value(m.stop_source) end
        as stop_source,
    count(*) filter (where m.stop_kind = 'parking' and m.starts_that_day) as parking_count,
    cast(coalesce(sum(m.piece_s) filter (where m.stop_kind = 'parking'), 0) as bigint) as parking_s,
    coalesce(max(m.duration_s) filter (where m.stop_kind = 'parking' and m.starts_that_day), 0)
        as longest_parking_s,
    cast(coalesce(sum(m.piece_night_s) filter (where m.stop_kind = 'parking'), 0) as bigint) as night_parking_s,
    count(*) filter (where m.stop_kind = 'parking' and m.starts_that_day and m.is_overnight)
        as overnight_parking_count,
    count(*) filter (where m.stop_kind = 'idling' and m.starts_that_day) as idling_count,
    cast(coalesce(sum(m.piece_s) filter (where m.stop_kind = 'idling'), 0) as bigint) as idling_s,
    count(*) filter (where m.stop_kind = 'unknown' and m.starts_that_day) as unknown_stop_count,
    cast(coalesce(sum(m.piece_s) filter (where m.stop_kind = 'unknown'), 0) as bigint) as unknown_stop_s,
    bool_or(m.is_provisional) or bool_or(u.imei is not null) as is_provisional
from measured as m
left join unseen_movement as u on u.imei = m.imei and u.partition_date = m.covered_day
left join {{ ref('dim_device_time_zones') }} as z on z.imei = m.imei
group by m.imei, m.covered_day
