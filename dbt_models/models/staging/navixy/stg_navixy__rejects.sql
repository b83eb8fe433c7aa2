-- navixy rejects: the rows validation refused, with the device they name (from the original record:
-- the IMEI where the row carries one, else its tracker id) typed out; no logic (dbt style guide).
select
    table_name, partition_key, field, reason, rejected_at,
    coalesce(json_extract_string(record, '$.imei'), json_extract_string(record, '$.source.device_id')) as imei,
    try_cast(json_extract_string(record, '$.tracker_id') as bigint) as tracker_id
from {{ source('raw_navixy', 'rejects') }}
