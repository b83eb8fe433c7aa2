"""Telesto assets: ``raw_telesto.products``, one stock snapshot per UTC day.

Telesto allows 100 requests an hour per client address and blocks the address for 15 minutes
beyond that, so the snapshot costs one call and the client refuses (instead of waiting or earning
the block) when the machine-wide hourly budget is spent.
"""

from dagster import AssetExecutionContext, MaterializeResult

from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.ingest.records import typed_frame
from fleet_pipeline.ingest.source_assets import Source, Table, extraction, load
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.sources.telesto import schemas
from fleet_pipeline.sources.telesto.resources import TelestoResource

SOURCE = Source(
    schema="raw_telesto", group="telesto", vendor="Telesto inventory",
    # the stock of a company with devices in service is never an empty catalogue
    fleet=Fleet("devices in service (Tracksolid and Navixy)",
                ((TableRef("raw_tracksolid", "devices"), "true"), (TableRef("raw_navixy", "trackers"), "true"))),
    tables={
        "products": Table(schemas.ProductSchema, schemas.PRODUCT_COLUMNS, key=("product_id",)),
    },
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)


@SOURCE.asset("products", "Daily snapshot of every product and its stock on hand (GET /v2/products): "
              "numbers typed, empty strings as null.", partitioned=False)
def products(context: AssetExecutionContext, telesto: TelestoResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, telesto.client) as run:
        rows = run.client.products()
        typed = typed_frame(rows, schemas.PRODUCT_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        return load(context, duckdb, SOURCE, run, "products", typed,
                    hourly_budget_left=run.client.budget_remaining())


telesto_assets = [products]
