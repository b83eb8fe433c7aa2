"""Telesto tables: the daily stock snapshot, typed (numbers arrive as strings, nulls as "")."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa

from fleet_pipeline.records import Col

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
