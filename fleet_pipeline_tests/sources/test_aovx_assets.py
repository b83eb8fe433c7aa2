"""AOVX OTA reports end to end: every attempt in the partition of its last update, parsed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline.partitions import day_bounds
from fleet_pipeline.sandbox import aovx as sandbox_aovx
from fleet_pipeline.sandbox.firmware import OTA_STATUS
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx import assets
from fleet_pipeline.sources.aovx.resources import AovxResource
from fleet_pipeline.warehouse import WarehouseResource


def test_ota_reports_match_the_worlds_attempts(tmp_path):
    world = World(seed=42, n_devices=120)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    # The most recent complete day on which the rollout touched an AOVX device.
    day = next(d for d in (now.date() - timedelta(days=n) for n in range(1, 60))
               if world.ota_attempts_updated("aovx", *day_bounds(d), now))
    with sandbox_aovx.make_server(world) as server:
        terminal_of = {world.aovx_terminal_id(d.imei): d.imei for d in world.devices if d.firmware_platform == "aovx"}
        resources = {
            "aovx": AovxResource(base_url=server.base_url + sandbox_aovx.API_PREFIX, token=sandbox_aovx.TOKEN,
                                 terminal_ids=sorted(terminal_of), cache_dir=str(tmp_path / "c")),
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        }
        result = materialize(assets.aovx_assets, partition_key=day.isoformat(), resources=resources,
                             instance=DagsterInstance.ephemeral())
        assert result.success
        now = datetime.now(timezone.utc).replace(tzinfo=None)
    expected = {a.attempt_id: a for a in world.ota_attempts_updated("aovx", *day_bounds(day), now)}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        rows = conn.execute("select attempt_id, terminal_id, status, firmware_version, firmware_url, upgrade_type "
                            "from raw_aovx.ota_reports").fetchall()
        rejects = conn.execute("select count(*) from raw_aovx.rejects").fetchone()[0]
    assert expected, "the day has OTA activity"
    assert {r[0] for r in rows} == set(expected) and rejects == 0
    for attempt_id, terminal_id, status, version, url, upgrade_type in rows:
        attempt = expected[attempt_id]
        assert terminal_of[terminal_id] == attempt.imei
        assert status == OTA_STATUS[attempt.status_at(now)]
        assert (version, url, upgrade_type) == (attempt.version, attempt.url, attempt.upgrade_type)


def test_a_missing_terminal_list_is_a_clear_configuration_error(monkeypatch):
    from fleet_pipeline import settings

    error = None
    try:
        settings.aovx_settings({"AOVX_TOKEN": "secret-token-value"})
    except settings.ConfigError as exc:
        error = str(exc)
    assert error and "AOVX_TERMINAL_IDS" in error and "secret-token-value" not in error
