-- telesto products: renamed to the shared vocabulary and typed; no logic (dbt style guide).
select
    {{ vendor_account() }}, snapshot_date, snapshot_at, product_id, name as product_name, sku, category,
    price, stock_onhand as stock_on_hand
from {{ source('raw_telesto', 'products') }}
