-- tracksolid pushed items of the other documented kinds, kept whole; no logic (dbt style guide).
select
    {{ vendor_account() }}, msg_id, imei, partition_date, push_path, message_time as message_at, received_at,
    item_json
from {{ source('raw_tracksolid', 'push_other') }}
