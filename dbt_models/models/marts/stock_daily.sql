-- Stock on hand per product and snapshot day, next to the activations that day of the tracker
-- model the product is (accessories have no model). Telesto's snapshot is taken when the daily
-- run happens, so stock_on_hand is the stock at snapshot_at.
with products as (
    select
        snapshot_date as day, snapshot_at, product_id, product_name, sku, category, stock_on_hand,
        case when sku like 'TRK-%' then {{ model_key('sku') }} end as model_key
    from {{ ref('stg_telesto__products') }}
    qualify row_number() over (partition by product_id, snapshot_date order by snapshot_at desc) = 1
),

activations as (
    select model_key, cast(activated_at as date) as day, count(*) as activations
    from {{ ref('dim_devices') }}
    where activated_at is not null
    group by all
)

select
    p.product_id,
    p.day,
    p.snapshot_at,
    p.product_name,
    p.sku,
    p.category,
    p.model_key,
    p.stock_on_hand,
    case when p.model_key is not null then coalesce(a.activations, 0) end as activations
from products as p
left join activations as a using (model_key, day)
