-- Stock per product and day next to the activations of the tracker model the product is
-- (accessories have no model), on every day the warehouse has a Telesto snapshot or loaded
-- partitions (the days of the trip and mileage tables), so that installs show on every loaded day
-- even before daily snapshots have accumulated. (Staging views, not mileage_daily: this model is
-- not partitioned, and an unpartitioned model reading a partitioned one would tie the two dbt
-- selections into a cycle.) Telesto's snapshot is taken when the daily run happens, so
-- stock_on_hand is the stock at snapshot_at; a day without one has none (stock_flag 'no_snapshot').
-- Telesto's own figures are kept as they are: "" (no count kept) is a null stock_on_hand flagged
-- 'stock_unknown', a negative one (installs booked before the goods arrived) is flagged 'oversold'.
with snapshots as (
    select
        snapshot_date as day, snapshot_at, product_id, product_name, sku, category, stock_on_hand
    from {{ ref('stg_telesto__products') }}
    qualify row_number() over (partition by product_id, snapshot_date order by snapshot_at desc) = 1
),

products as (
    select product_id, product_name, sku, category,
           case when sku like 'TRK-%' then {{ model_key('sku') }} end as model_key
    from snapshots
    qualify row_number() over (partition by product_id order by day desc) = 1
),

days as (
    select day from snapshots
    union
    select partition_date from {{ ref('stg_tracksolid__trips') }}
    union
    select partition_date from {{ ref('stg_navixy__mileage_daily') }}
),

activations as (
    select model_key, cast(activated_at as date) as day, count(*) as activations
    from {{ ref('dim_devices') }}
    where activated_at is not null
    group by all
),

grid as (
    select
        p.product_id, d.day, s.snapshot_at, p.product_name, p.sku, p.category, p.model_key,
        s.stock_on_hand,
        case
            when s.snapshot_at is null then 'no_snapshot'
            when s.stock_on_hand is null then 'stock_unknown'
            when s.stock_on_hand < 0 then 'oversold'
        end as stock_flag,
        case when p.model_key is not null then coalesce(a.activations, 0) end as activations
    from products as p
    cross join days as d
    left join snapshots as s on s.product_id = p.product_id and s.day = d.day
    left join activations as a on a.model_key = p.model_key and a.day = d.day
)

select
    *,
    {{ local_date('day', "'" ~ var('default_time_zone') ~ "'") }} as local_date,
    -- Units received since the day before, for a tracker product whose installs are its only
    -- consumption: the change in stock plus that day's activations (needs both days' counts).
    case
        when model_key is not null
            and lag(day) over (partition by product_id order by day) = day - interval 1 day
        then stock_on_hand - lag(stock_on_hand) over (partition by product_id order by day) + activations
    end as deliveries_inferred
from grid
