"""AOVX OTA reports end to end: every attempt in the partition of its last update, parsed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline.automation.partitions import day_bounds
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import aovx as sandbox_aovx
from fleet_pipeline.sandbox.server import ManualClock
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sandbox.world.firmware import OTA_STATUS
from fleet_pipeline.sources.aovx import assets
from fleet_pipeline.sources.aovx.resources import AovxResource


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
        result = materialize([assets.ota_reports], partition_key=day.isoformat(), resources=resources,
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


def _history_metadata(result) -> dict:
    event = next(e for e in result.get_asset_materialization_events()
                 if e.asset_key.path == ["raw_aovx", "ota_history"])
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_ota_history_loads_the_retention_window_once_then_extends_it(tmp_path):
    # The first run reads AOVX's whole retention window: every attempt the vendor still holds,
    # whatever day it was last updated on. A later run reads only from a day before the newest
    # update it holds, and the table then holds every attempt in its state at the second run.
    world = World(seed=42, n_devices=120)
    real_now = datetime.now(timezone.utc).replace(tzinfo=None)
    clock = ManualClock(real_now - timedelta(days=20))
    terminal_of = {world.aovx_terminal_id(d.imei): d.imei for d in world.devices if d.firmware_platform == "aovx"}
    database = str(tmp_path / "w.duckdb")
    runs = []
    with sandbox_aovx.make_server(world, now=clock) as server:
        resources = {
            "aovx": AovxResource(base_url=server.base_url + sandbox_aovx.API_PREFIX, token=sandbox_aovx.TOKEN,
                                 terminal_ids=sorted(terminal_of), cache_dir=str(tmp_path / "c")),
            "duckdb": WarehouseResource(database=database),
        }
        for _ in range(2):
            result = materialize([assets.ota_history], resources=resources, instance=DagsterInstance.ephemeral())
            assert result.success
            runs.append(_history_metadata(result))
            clock.set(datetime.now(timezone.utc).replace(tzinfo=None))
        seen_at = clock()
    first, second = runs
    assert first["first_load"] is True and second["first_load"] is False
    retention_start = datetime.fromisoformat(first["window_end"]) - timedelta(days=365)
    assert first["window_start"] == str(datetime.combine(retention_start.date(), datetime.min.time()))
    first_newest = world.ota_attempts_updated("aovx", retention_start, real_now, real_now - timedelta(days=20))
    resume = max(a.last_update_at(real_now - timedelta(days=20)) for a in first_newest) - timedelta(days=1)
    assert second["window_start"] == str(datetime.combine(resume.date(), datetime.min.time()))
    with duckdb.connect(database, read_only=True) as conn:
        rows = conn.execute("select attempt_id, status, last_update_at from raw_aovx.ota_history "
                            "qualify row_number() over (partition by attempt_id order by last_update_at desc) = 1"
                            ).fetchall()
        rejects = conn.execute("select count(*) from raw_aovx.rejects").fetchone()[0]
    expected = {a.attempt_id: a for a in world.ota_attempts_updated("aovx", retention_start, seen_at, seen_at)}
    assert expected and rejects == 0
    assert {r[0] for r in rows} == set(expected)
    for attempt_id, status, updated in rows:
        attempt = expected[attempt_id]
        assert (status, updated) == (OTA_STATUS[attempt.status_at(seen_at)], attempt.last_update_at(seen_at))


def test_a_missing_terminal_list_is_a_clear_configuration_error(monkeypatch):
    from fleet_pipeline.ingest.env import ConfigError
    from fleet_pipeline.sources.aovx.settings import aovx_settings

    error = None
    try:
        aovx_settings({"AOVX_TOKEN": "secret-token-value"})
    except ConfigError as exc:
        error = str(exc)
    assert error and "AOVX_TERMINAL_IDS" in error and "secret-token-value" not in error
