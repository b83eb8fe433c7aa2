-- tracksolid rejects: the rows validation refused, with the device they name (from the original
-- record) typed out; no logic (dbt style guide).
select
    table_name, partition_key, field, reason, rejected_at,
    json_extract_string(record, '$.imei') as imei
from {{ source('raw_tracksolid', 'rejects') }}
