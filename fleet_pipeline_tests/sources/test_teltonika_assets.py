"""Teltonika FOTA snapshots end to end: firmware per device today equals the world's truth."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline.sandbox import teltonika as sandbox_teltonika
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.teltonika import assets
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource
from fleet_pipeline.warehouse import WarehouseResource


def test_device_snapshot_holds_todays_firmware_of_every_device(tmp_path):
    world = World(seed=42, n_devices=60)
    with sandbox_teltonika.make_server(world) as server:
        resources = {
            "teltonika": TeltonikaResource(base_url=server.base_url, api_token=sandbox_teltonika.API_TOKEN,
                                           cache_dir=str(tmp_path / "cache")),
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        }
        result = materialize(assets.teltonika_assets, resources=resources, instance=DagsterInstance.ephemeral())
        assert result.success
        observed_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        firmware = dict(conn.execute("select imei, current_firmware from raw_teltonika.devices").fetchall())
        groups = conn.execute("select count(*) from raw_teltonika.groups").fetchone()[0]
        rejects = conn.execute("select count(*) from raw_teltonika.rejects").fetchone()[0]
    expected = {d.imei: world.firmware_at(d.imei, observed_at)
                for d in world.devices if d.firmware_platform == "teltonika_fota"}
    assert firmware == expected
    assert len(set(firmware.values())) > 1, "a rollout is under way: more than one version in use"
    assert groups > 0 and rejects == 0
