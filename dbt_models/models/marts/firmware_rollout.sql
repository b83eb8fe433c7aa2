-- Firmware rollout per model, version and snapshot day, over every device a firmware platform
-- manages (Teltonika FOTA, AOVX). A device whose version the vendor cannot tell is counted on the
-- model's row whose firmware_version is 'unknown': it is in model_devices, not in
-- devices_known_version, and share_on_target is over the known ones. (AOVX reports OTA attempts
-- only, never a device's running version: a device with no retained attempt, or whose attempts
-- all install the oldest version its model's retained attempts name, has no record that says
-- which version it runs; see dim_device_firmware_daily, where it is null.) The
-- target version of a model is the one its most recent OTA attempt installs, else the highest
-- version seen on the model. Attempt metrics (both platforms) are per model and UTC day of the
-- attempt's latest status, repeated on each version row of that model-day; a model-day with
-- attempts but no device snapshot (a day loaded before the first snapshot, or AOVX history) has
-- one row whose firmware_version and device counts are null: it carries that day's attempts only.
with daily as (
    select snapshot_date as day, model_key, firmware_version, count(*) as devices_on_version
    from {{ ref('dim_device_firmware_daily') }}
    where firmware_platform is not null
    group by all
),

model_day as (
    -- counts: BIGINT, not the HUGEINT DuckDB sums integers to (Parquet would store a DOUBLE)
    select day, model_key, cast(sum(devices_on_version) as bigint) as model_devices,
        cast(sum(devices_on_version) filter (where firmware_version is not null) as bigint)
            as devices_known_version
    from daily
    group by all
),

target as (
    select model_key, coalesce(
        (select a.target_version from {{ ref('fct_ota_attempts') }} as a
         where a.model_key = v.model_key order by a.sent_at desc limit 1),
        max(v.firmware_version)) as target_version
    from daily as v
    group by model_key
),

attempts_by_day as (
    select
        model_key,
        cast(last_update_at as date) as day,
        count(*) as attempts,
        count(*) filter (where is_success) as attempts_success,
        count(*) filter (where is_failed) as attempts_failed,
        count(*) filter (where not is_success and not is_failed) as attempts_other
    from {{ ref('fct_ota_attempts') }}
    group by all
),

-- Model-days with attempts and no snapshot: a row of their own, so no attempt is left out.
attempt_only_days as (
    select a.model_key, a.day
    from attempts_by_day as a
    left join model_day as m using (model_key, day)
    where m.day is null
),

version_rows as (
    select day, model_key, coalesce(firmware_version, 'unknown') as firmware_version, devices_on_version
    from daily
    union all
    select day, model_key, null as firmware_version, null as devices_on_version
    from attempt_only_days
),

per_device as (
    select
        imei, model_key,
        min(sent_at) as first_attempt_at,
        min(last_update_at) filter (where is_success) as first_success_at
    from {{ ref('fct_ota_attempts') }}
    group by all
),

time_to_success as (
    select m.day, m.model_key,
        median(date_diff('second', p.first_attempt_at, p.first_success_at))
            filter (where p.first_success_at < m.day + interval 1 day) as median_first_attempt_to_success_s
    from (select distinct day, model_key from version_rows) as m
    left join per_device as p using (model_key)
    group by all
),

stuck as (
    select f.snapshot_date as day, f.model_key, count(*) as devices_stuck
    from {{ ref('dim_device_firmware_daily') }} as f
    join per_device as p using (imei)
    join target as t on t.model_key = f.model_key
    where coalesce(f.firmware_version, '') <> t.target_version
      and p.first_attempt_at < f.snapshot_date - interval {{ var('firmware_stuck_days') }} day
    group by all
)

select
    d.model_key,
    d.firmware_version,
    d.day,
    {{ local_date('d.day', "'" ~ var('default_time_zone') ~ "'") }} as local_date,
    d.devices_on_version,
    m.model_devices,
    m.devices_known_version,
    t.target_version,
    coalesce(d.firmware_version = t.target_version, false) as is_target,
    coalesce(cast(sum(d.devices_on_version) filter (where d.firmware_version = t.target_version)
         over (partition by d.model_key, d.day) as double), 0) / nullif(m.devices_known_version, 0) as share_on_target,
    coalesce(a.attempts, 0) as attempts,
    coalesce(a.attempts_success, 0) as attempts_success,
    coalesce(a.attempts_failed, 0) as attempts_failed,
    coalesce(a.attempts_other, 0) as attempts_other,
    case when a.attempts > 0 then cast(a.attempts_success as double) / a.attempts end as success_rate,
    s.median_first_attempt_to_success_s,
    case when m.day is not null then coalesce(k.devices_stuck, 0) end as devices_stuck
from version_rows as d
left join model_day as m using (day, model_key)
left join target as t using (model_key)
left join attempts_by_day as a using (model_key, day)
left join time_to_success as s using (model_key, day)
left join stuck as k using (model_key, day)
