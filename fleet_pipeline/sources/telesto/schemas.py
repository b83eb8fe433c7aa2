"""Telesto tables: the daily stock snapshot, typed (numbers arrive as strings, nulls as "")."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa

from fleet_pipeline.ingest.records import Col

PRODUCT_COLUMNS = [
    Col.of("product_id", "id"),
    Col.of("name"),
    Col.of("sku"),
    Col.of("ean_upc"),
    Col.of("category"),
    Col.of("price", kind="float"),
    Col.of("stock_onhand", kind="int"),
    Col.of("description"),
    Col.of("created_time", "created", kind="time"),
]


class ProductSchema(pa.DataFrameModel):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    product_id: str = pa.Field(nullable=False, unique=True, str_length={"min_value": 1})
    name: str = pa.Field(nullable=False)
    sku: str = pa.Field(nullable=True)
    ean_upc: str = pa.Field(nullable=True, str_matches=r"^\d{8,14}$")
    category: str = pa.Field(nullable=True)
    price: float = pa.Field(nullable=True, ge=0)
    # "" (the vendor's null: a product whose stock is not counted) and negative figures (oversold:
    # installs booked before the goods are received) are real stock figures: kept, flagged downstream
    stock_onhand: int = pa.Field(nullable=True)
    description: str = pa.Field(nullable=True)
    created_time: datetime = pa.Field(nullable=True)


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.ingest.validation.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "category": "Product category.",
    "created_time": "When the product was created in Telesto, naive UTC.",
    "description": "Product description in the Telesto catalogue.",
    "ean_upc": "EAN/UPC barcode of the product.",
    "name": "Product name.",
    "price": "Unit price.",
    "product_id": "Telesto product id.",
    "sku": "Stock keeping unit (TRK-<model> for trackers).",
    "stock_onhand": "Units in stock at the snapshot.",
}
