"""Telesto stock snapshot end to end: sandbox over loopback -> client -> DuckDB, against the world."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import telesto as sandbox_telesto
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.telesto import assets
from fleet_pipeline.sources.telesto.resources import TelestoResource


def test_stock_snapshot_matches_the_world_and_costs_one_call(tmp_path):
    world = World(seed=42, n_devices=40)
    with sandbox_telesto.make_server(world) as server:
        resources = {
            "telesto": TelestoResource(base_url=server.base_url, api_key=sandbox_telesto.API_KEY,
                                       cache_dir=str(tmp_path / "cache")),
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        }
        result = materialize([assets.products], resources=resources, instance=DagsterInstance.ephemeral())
        assert result.success
        [event] = result.get_asset_materialization_events()
        metadata = event.event_specific_data.materialization.metadata
        assert metadata["api_calls"].value == 1 and metadata["hourly_budget_left"].value == 89
    today = datetime.now(timezone.utc).date()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        stored = dict(conn.execute("select product_id, stock_onhand from raw_telesto.products").fetchall())
        types = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                  "where table_name = 'products'").fetchall())
        empty_strings = conn.execute("select count(*) from raw_telesto.products where ean_upc = '' or sku = ''").fetchone()
    visible = [p for p in world.products if p.created <= datetime.now(timezone.utc).replace(tzinfo=None)]
    assert stored == {p.product_id: world.stock_on(p.product_id, today) for p in visible}
    assert types["stock_onhand"] == "BIGINT" and types["snapshot_date"] == "DATE"
    assert empty_strings == (0,), "empty strings are stored as NULL"


def test_unknown_and_oversold_stock_are_kept_as_the_vendor_shows_them(tmp_path):
    # A day on which the world has an oversold product (a week's installs outran the stock before
    # Thursday's delivery) besides the accessory nobody counts: Telesto serves "-1" and "" for them.
    world = World(seed=42, n_devices=200)
    day = next(d for d in (world.anchor - timedelta(days=n) for n in range(1, 120))
               if any((world.stock_on(p.product_id, d) or 0) < 0 for p in world.products))
    with sandbox_telesto.make_server(world, now=lambda: datetime.combine(day, time(10))) as server:
        resources = {
            "telesto": TelestoResource(base_url=server.base_url, api_key=sandbox_telesto.API_KEY,
                                       cache_dir=str(tmp_path / "cache")),
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        }
        assert materialize([assets.products], resources=resources, instance=DagsterInstance.ephemeral()).success
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        stored = dict(conn.execute("select product_id, stock_onhand from raw_telesto.products").fetchall())
        rejected = conn.execute("select count(*) from raw_telesto.rejects").fetchone()[0]
    expected = {p.product_id: world.stock_on(p.product_id, day) for p in world.products
                if p.created <= datetime.combine(day, time(10))}
    assert rejected == 0 and stored == expected
    assert None in stored.values() and min(v for v in stored.values() if v is not None) < 0
