{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
-- One row per parking or idling stop. The vendor's report is the authority where the platform has
-- one (Tracksolid), but it lists a parking only once it has ended: an evening parking still going
-- on when the day is extracted is missing until a later re-run. A derived stop (from track points)
-- fills in for any stop the report does not have yet, so the day is complete at once; Navixy has no
-- report, so its stops are all derived. Stops the day opens with are left to the day they started.
with stops as (
    select * from {{ ref('fct_stops') }}
    where not continues_previous_day
      {{ partition_filter('partition_date') }}
),

vendor as (
    select * from stops where stop_source = 'vendor'
),

-- Matched on the device alone, every derived stop would meet every reported stop of the device in
-- the window: a range build would grow with the square of its days. A report within the tolerance
-- starts in the same time slot of (tolerance + 1) s as the derived stop or a neighbouring one, so
-- each report is offered to three slots and matched on the slot (the second absorbs date_diff's
-- truncation to whole seconds).
vendor_slots as (
    select v.imei, v.started_at,
           floor(epoch(v.started_at) / ({{ var('stop_match_tolerance_s') }} + 1)) + s.shift as slot
    from vendor as v
    cross join (values (-1), (0), (1)) as s (shift)
),

derived_not_in_report as (
    select d.*
    from stops as d
    where d.stop_source = 'derived'
      and not exists (
          select 1 from vendor_slots as v
          where v.imei = d.imei
            and v.slot = floor(epoch(d.started_at) / ({{ var('stop_match_tolerance_s') }} + 1))
            and abs(date_diff('second', v.started_at, d.started_at)) <= {{ var('stop_match_tolerance_s') }}
      )
),

events as (
    select * from vendor
    union all
    select * from derived_not_in_report
),

-- The night window of the start day: [00:00, night_end) and [night_start, next day's night_end).
night as (
    select
        *,
        partition_date + interval {{ var('night_start_hour') }} hour as evening_from,
        partition_date + interval 1 day + interval {{ var('night_end_hour') }} hour as evening_to,
        partition_date + interval {{ var('night_end_hour') }} hour as early_to
    from events
)

select
    stop_id, imei, platform, stop_source, stop_kind, partition_date, partition_date as day,
    started_at, ended_at, duration_s, ignition_on, lat, lng,
    greatest(date_diff('second', greatest(started_at, partition_date::timestamp), least(ended_at, early_to)), 0)
    + greatest(date_diff('second', greatest(started_at, evening_from), least(ended_at, evening_to)), 0)
        as night_s,
    cast(ended_at as date) > partition_date as is_overnight
from night
