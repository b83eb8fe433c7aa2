"""Teltonika FOTA snapshots end to end: firmware per device today and the OTA tasks equal the world's truth."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import teltonika as sandbox_teltonika
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.teltonika import assets
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource


def _resources(base_url: str, tmp_path) -> dict:
    return {
        "teltonika": TeltonikaResource(base_url=base_url, api_token=sandbox_teltonika.API_TOKEN,
                                       cache_dir=str(tmp_path / "cache")),
        "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
    }


def test_device_snapshot_holds_todays_firmware_of_every_device(tmp_path):
    world = World(seed=42, n_devices=60)
    with sandbox_teltonika.make_server(world) as server:
        resources = _resources(server.base_url, tmp_path)
        result = materialize(assets.teltonika_assets, resources=resources, instance=DagsterInstance.ephemeral())
        assert result.success
        observed_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        firmware = dict(conn.execute("select imei, current_firmware from raw_teltonika.devices").fetchall())
        groups = conn.execute("select count(*) from raw_teltonika.groups").fetchone()[0]
        rejects = conn.execute("select count(*) from raw_teltonika.rejects").fetchone()[0]
    # FOTA lists a device from its first connection, on its activation day: a device installed
    # today may or may not be there yet, a later install of the week is not.
    assert all(world.is_activated(world.device(imei), observed_at) for imei in firmware)
    today = observed_at.date()
    expected = {d.imei: world.firmware_at(d.imei, observed_at)
                for d in world.devices if d.firmware_platform == "teltonika_fota" and d.activation_date < today}
    assert {imei: v for imei, v in firmware.items() if world.device(imei).activation_date < today} == expected
    assert len(set(firmware.values())) > 1, "a rollout is under way: more than one version in use"
    assert groups > 0 and rejects == 0


def test_task_snapshot_holds_every_ota_attempt_with_its_target_version(tmp_path):
    world = World(seed=42, n_devices=60)
    with sandbox_teltonika.make_server(world) as server:
        resources = _resources(server.base_url, tmp_path)
        before = datetime.now(timezone.utc).replace(tzinfo=None)
        result = materialize([assets.tasks, assets.batches], resources=resources, instance=DagsterInstance.ephemeral())
        assert result.success
        after = datetime.now(timezone.utc).replace(tzinfo=None)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        tasks = conn.execute("select imei, created_time, firmware_version, status_id, status_changed_time "
                             "from raw_teltonika.tasks").fetchall()
        batch_tasks = conn.execute("select sum(objects) from raw_teltonika.batches").fetchone()[0]
        rejects = conn.execute("select count(*) from raw_teltonika.rejects").fetchone()[0]
    attempts = {(d.imei, a.sent_at.replace(microsecond=0)): a for d in world.devices
                if d.firmware_platform == "teltonika_fota" for a in world.ota_attempts(d.imei) if a.sent_at <= after}
    assert tasks and rejects == 0
    found = {(imei, created) for imei, created, *_ in tasks}
    assert {k for k, a in attempts.items() if a.sent_at <= before} <= found <= set(attempts)
    assert batch_tasks == len(tasks)
    for imei, created, version, status_id, changed in tasks:
        attempt = attempts[(imei, created)]
        assert version == attempt.version
        if attempt.last_update_at(before) == attempt.last_update_at(after):   # not moving while read
            assert changed == attempt.last_update_at(after).replace(microsecond=0)
            assert (status_id == 2) == (attempt.status_at(after) == 3)
