-- navixy mileage_daily: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, imei, tracker_id, partition_date, local_date, time_zone, mileage_km as distance_km
from {{ source('raw_navixy', 'mileage_daily') }}
