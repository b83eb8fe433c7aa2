"""The dbt project end to end: a small sandbox warehouse, `dbt build`, marts against the World's truth.

The warehouse is built once per session by the real `fleet-pipeline demo` (every source, two UTC
days, 20 devices) so the models run on exactly what the loaders write; dbt runs as a subprocess
with its target/ and logs/ inside the temporary directory so the repository stays clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.world import World

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_models"
BIN = Path(sys.executable).parent
N_DEVICES = 20
SEED = 42

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Warehouse:
    path: Path
    days: list[date]
    world: World


def _sandbox_env(data_dir: Path) -> dict[str, str]:
    # Vendor credentials in the caller's environment would switch the demo to live mode.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRACKSOLID_", "NAVIXY_", "TELTONIKA_", "AOVX_", "TELESTO_"))}
    env.update(FLEET_DATA_DIR=str(data_dir), FLEET_SANDBOX_DEVICES=str(N_DEVICES),
               FLEET_SANDBOX_SEED=str(SEED))
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def run_dbt(tmp: Path, db: Path, *args: str) -> None:
    env = {**os.environ, "DBT_PROFILES_DIR": str(DBT_PROJECT), "FLEET_DUCKDB_PATH": str(db)}
    _run([str(BIN / "dbt"), *args, "--target-path", str(tmp / "dbt_target"),
          "--log-path", str(tmp / "dbt_logs")], env, DBT_PROJECT)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    tmp = tmp_path_factory.mktemp("dbt_models")
    _run([str(BIN / "fleet-pipeline"), "demo", "--days", "2"], _sandbox_env(tmp), REPO)
    db = tmp / "sandbox.duckdb"
    assert db.exists(), f"the demo wrote no warehouse at {db}"
    run_dbt(tmp, db, "build")
    with duckdb.connect(str(db), read_only=True) as con:
        days = [r[0] for r in con.execute(
            "select distinct partition_date from raw_tracksolid.track_points order by 1").fetchall()]
    assert len(days) == 2
    return Warehouse(path=db, days=days, world=World(seed=SEED, n_devices=N_DEVICES))


def query(wh: Warehouse, sql: str) -> list[tuple]:
    with duckdb.connect(str(wh.path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_models_land_in_the_three_schemas(warehouse: Warehouse) -> None:
    rows = query(warehouse, "select table_schema, table_name from information_schema.tables "
                            "where table_schema in ('staging', 'core', 'marts')")
    by_schema: dict[str, set[str]] = {}
    for schema, name in rows:
        by_schema.setdefault(schema, set()).add(name)
    assert {"stg_tracksolid__track_points", "stg_navixy__events"} <= by_schema["staging"]
    assert {"dim_devices", "fct_trips", "fct_track_points", "fct_alarms"} <= by_schema["core"]
    assert {"mileage_daily", "alarms_daily"} <= by_schema["marts"]


def test_dim_devices_has_one_row_per_device_of_both_platforms(warehouse: Warehouse) -> None:
    rows = {imei: (platform, enabled) for imei, platform, enabled in
            query(warehouse, "select imei, platform, is_enabled from core.dim_devices")}
    world = warehouse.world
    # A blocked Navixy tracker is still listed by tracker/list; only its data is refused.
    blocked = navixy.default_blocked_tracker_ids(world)
    expected = {d.imei: (d.platform, not (d.platform == "navixy" and navixy.tracker_id(d) in blocked))
                for d in world.devices}
    assert rows == expected


def test_mileage_daily_chosen_km_matches_the_true_km(warehouse: Warehouse) -> None:
    rows = query(warehouse, "select imei, day, chosen_km, chosen_source from marts.mileage_daily")
    assert rows, "mileage_daily is empty"
    checked = 0
    for imei, day, chosen_km, source in rows:
        true_km = warehouse.world.day(imei, day).true_km
        assert chosen_km == pytest.approx(true_km, rel=0.01, abs=0.02), (imei, day, source, true_km)
        checked += true_km > 0
    assert checked >= 10, "too few driving device-days to test anything"


def test_alarms_daily_counts_equal_the_world_alarms(warehouse: Warehouse) -> None:
    world = warehouse.world
    # Blocked (and deleted) Navixy trackers answer 217, so they have no rows at all.
    absent = navixy.default_blocked_tracker_ids(world) | navixy.default_deleted_tracker_ids(world)
    expected: Counter[tuple[str, date, str]] = Counter()
    devices = [d for d in world.devices
               if d.platform == "tracksolid" or navixy.tracker_id(d) not in absent]
    for d in devices:
        for day in warehouse.days:
            for alarm in world.day(d.imei, day).alarms:
                expected[(d.imei, day, alarm.kind)] += 1
    kinds = sorted({k for (_, _, k) in expected} | {"overspeed", "sos"})
    in_list = ", ".join(f"'{k}'" for k in kinds)
    rows = query(warehouse, "select imei, day, canonical_type, alarm_count from marts.alarms_daily "
                            f"where canonical_type in ({in_list})")
    actual = Counter({(imei, day, kind): n for imei, day, kind, n in rows})
    assert sum(expected.values()) > 0
    assert actual == expected


def test_every_alarm_code_of_the_sandbox_is_mapped(warehouse: Warehouse) -> None:
    unmapped = query(warehouse, "select platform, vendor_code, count(*) from core.fct_alarms "
                                "where not is_mapped group by all")
    assert unmapped == []


def test_navixy_ignition_and_trip_events_are_split_by_state(warehouse: Warehouse) -> None:
    counts = dict(query(warehouse, "select canonical_type, count(*) from core.fct_alarms "
                                   "where platform = 'navixy' group by all"))
    raw = dict(query(warehouse, "select event_type, count(*) from raw_navixy.events group by all"))
    assert counts.get("ignition_on", 0) + counts.get("ignition_off", 0) == raw.get("input_change", 0)
    assert counts.get("trip_start", 0) == raw.get("track_start", 0) > 0


def test_parking_derived_from_points_matches_the_world_parkings(warehouse: Warehouse) -> None:
    # Navixy sends no parking report, so its parkings are the stops derived from track points.
    rows = query(warehouse, "select imei, day, parking_count from marts.parking_daily "
                            "where platform = 'navixy'")
    actual = {(imei, day): n for imei, day, n in rows}
    world = warehouse.world
    absent = navixy.default_blocked_tracker_ids(world)
    expected = {}
    for d in world.devices_on("navixy"):
        if navixy.tracker_id(d) in absent:
            continue
        for day in warehouse.days:
            n = sum(1 for s in world.day(d.imei, day).stops if s.kind == "parking")
            if n:
                expected[(d.imei, day)] = n
    assert expected, "no Navixy parking in the world: nothing tested"
    assert actual == expected


def test_teltonika_firmware_per_day_is_the_world_version(warehouse: Warehouse) -> None:
    rows = query(warehouse, """
        select f.imei, f.firmware_version, t.snapshot_at
        from core.dim_device_firmware_daily as f
        join staging.stg_teltonika__devices as t using (imei, snapshot_date)
        where f.firmware_platform = 'teltonika'""")
    assert rows, "no Teltonika-managed device in the warehouse"
    for imei, version, snapshot_at in rows:
        assert version == warehouse.world.firmware_at(imei, snapshot_at), imei


def test_a_one_day_run_replaces_only_that_day(warehouse: Warehouse, tmp_path: Path) -> None:
    # Last in the file: it leaves the first day of mileage_daily damaged on purpose.
    first, second = warehouse.days
    totals = "select day, count(*), round(sum(chosen_km), 6) from marts.mileage_daily group by 1 order by 1"
    before = query(warehouse, totals)
    with duckdb.connect(str(warehouse.path)) as con:
        con.execute("delete from marts.mileage_daily where day = ?", [second])
        con.execute("update marts.mileage_daily set chosen_km = -1 where day = ?", [first])
    run_dbt(tmp_path, warehouse.path, "run", "--select", "mileage_daily",
            "--vars", f"{{min_date: '{second}', max_date: '{second}'}}")
    after = dict((d, (n, km)) for d, n, km in query(
        warehouse, "select day, count(*), sum(chosen_km) from marts.mileage_daily group by 1"))
    assert after[second] == pytest.approx(dict((d, (n, km)) for d, n, km in before)[second], abs=1e-6)
    assert after[first][1] == -after[first][0], "the other day must be left untouched"
