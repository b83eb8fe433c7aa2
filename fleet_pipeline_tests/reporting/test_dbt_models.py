"""The dbt project end to end: a small sandbox warehouse, `dbt build`, marts against the World's truth.

The warehouse is the session's shared demo (`fleet_pipeline_tests/shared_demo.py`: the real
`fleet-pipeline demo`, every source, two UTC days, 20 devices, then `dbt build`) so the models run
on exactly what the loaders write; this file works on its own copy of it (its tests write), and dbt
runs as a subprocess with its target/ and logs/ inside the temporary directory so the repository
stays clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

from fleet_pipeline.reporting.figures import EVENT_TYPES
from fleet_pipeline.sandbox import aovx as sandbox_aovx
from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.world import Stop, World
from fleet_pipeline_tests.reporting import world_figures
from fleet_pipeline_tests.shared_demo import BIN, N_DEVICES, REPO, SEED, SharedDemo, demo_env, run
from fleet_pipeline_tests.shared_demo import run_dbt as dbt_with_env

pytestmark = pytest.mark.timeout(1500)


@dataclass(frozen=True)
class Warehouse:
    path: Path
    days: list[date]
    world: World
    data_dir: Path
    extracted_from: datetime  # when the demo started: fixes the devices sent later were not served yet


def run_dbt(tmp: Path, db: Path, *args: str) -> None:
    dbt_with_env(tmp, db, os.environ, *args)


@pytest.fixture(scope="session")
def warehouse(shared_demo: SharedDemo, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    # Its own copy of the whole data folder: tests here damage a mart and run a second demo on it.
    data_dir = shared_demo.copy_to(tmp_path_factory.mktemp("dbt_models"))
    return Warehouse(path=data_dir / shared_demo.warehouse.name, days=shared_demo.days,
                     world=World(seed=SEED, n_devices=N_DEVICES), data_dir=data_dir,
                     extracted_from=shared_demo.extracted_from)


FIRMWARE_DEVICES = 200


@pytest.fixture(scope="session")
def firmware_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The rollout at the issue's scale: 200 devices (35 on AOVX, both of its models), every
    snapshot source and one day of AOVX reports loaded through the assets into their sandboxes,
    then `dbt build` of firmware_rollout and everything it reads."""
    from fleet_pipeline.ingest.warehouse import WarehouseResource
    from fleet_pipeline.sources.aovx import assets as aovx_assets
    from fleet_pipeline.sources.registry import VENDORS

    tmp = tmp_path_factory.mktemp("firmware")
    db = tmp / "firmware.duckdb"
    sandbox = dict(cache_dir=str(tmp / "cache"), sandbox_seed=SEED, sandbox_devices=FIRMWARE_DEVICES)
    resources = {**{spec.resource_key: spec.resource_class()(**sandbox) for spec in VENDORS},
                 "duckdb": WarehouseResource(database=str(db))}
    snapshots = [a for spec in VENDORS for a in spec.load_assets() if a.partitions_def is None]
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    (tmp / "dagster_home").mkdir()
    with DagsterInstance.from_config(str(tmp / "dagster_home")) as instance:
        assert materialize(snapshots, resources=resources, instance=instance).success
        assert materialize([aovx_assets.ota_reports], partition_key=yesterday.isoformat(), resources=resources,
                           instance=instance).success
    run_dbt(tmp, db, "build", "--select", "+firmware_rollout", "--indirect-selection", "cautious")
    return Warehouse(path=db, days=[yesterday], world=World(seed=SEED, n_devices=FIRMWARE_DEVICES), data_dir=tmp,
                     extracted_from=datetime.now(timezone.utc).replace(tzinfo=None))


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
    # The snapshot lists every device installed by then; a later install of the week is not listed yet.
    expected = {d.imei: (d.platform, not (d.platform == "navixy" and navixy.tracker_id(d) in blocked))
                for d in world.devices if world.is_activated(d, warehouse.extracted_from)}
    assert rows == expected


@pytest.mark.parametrize("built", ["warehouse", "firmware_warehouse"])
def test_installs_per_day_equal_the_worlds(built: str, request) -> None:
    # A device appears on its platform on its activation day: per activation day, dim_devices holds
    # the World's installs up to the snapshot day, those of the loaded days and the snapshot day
    # included, and none of the week's later installs.
    warehouse: Warehouse = request.getfixturevalue(built)
    world = warehouse.world
    (snapshot_day,), = query(warehouse, "select max(last_snapshot_date) from core.dim_devices")
    shown = Counter(dict(query(warehouse, "select cast(activated_at as date), count(*) from core.dim_devices "
                                          "group by all")))
    assert shown == Counter(d.activation_date for d in world.devices if d.activation_date <= snapshot_day)
    demo_days = [*warehouse.days, snapshot_day]
    assert [shown[day] for day in demo_days] == [sum(d.activation_date == day for d in world.devices)
                                                 for day in demo_days]
    if world.n_devices >= 138:   # the install stream has one a day over the anchor's week and the one before
        assert all(shown[day] > 0 for day in demo_days), shown


def test_mileage_daily_chosen_km_matches_the_true_km(warehouse: Warehouse) -> None:
    rows = query(warehouse, "select imei, day, chosen_km, chosen_source from marts.mileage_daily "
                            "where not tracker_blocked")
    assert rows, "mileage_daily is empty"
    checked = 0
    for imei, day, chosen_km, source in rows:
        true_km = warehouse.world.day(imei, day).true_km
        assert chosen_km == pytest.approx(true_km, rel=0.01, abs=0.02), (imei, day, source, true_km)
        checked += true_km > 0
    assert checked >= 10, "too few driving device-days to test anything"


def test_blocked_trackers_stay_in_mileage_daily_flagged_with_unknown_km(warehouse: Warehouse) -> None:
    # The vendor refuses a blocked tracker's data (217): its days are rows with no km, flagged.
    world = warehouse.world
    blocked = {d.imei for d in world.devices_on("navixy", at=warehouse.extracted_from)
               if navixy.tracker_id(d) in navixy.default_blocked_tracker_ids(world)}
    assert blocked, "the sandbox blocks no tracker: nothing tested"
    rows = query(warehouse, "select imei, day, chosen_km, chosen_source, tracker_blocked from marts.mileage_daily")
    flagged = {(imei, day) for imei, day, _, _, is_blocked in rows if is_blocked}
    assert flagged == {(imei, day) for imei in blocked for day in warehouse.days}
    for imei, day, km, source, is_blocked in rows:
        if is_blocked:
            assert km is None and source == "none", (imei, day)


def _world_alarm_counts(warehouse: Warehouse) -> Counter[tuple[str, date, str]]:
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
    return expected


def _alarms_daily(db: Path, expected: Counter[tuple[str, date, str]]) -> Counter[tuple[str, date, str]]:
    kinds = sorted({k for (_, _, k) in expected} | {"overspeed", "sos"})
    in_list = ", ".join(f"'{k}'" for k in kinds)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("select imei, day, canonical_type, alarm_count from marts.alarms_daily "
                           f"where canonical_type in ({in_list})").fetchall()
    return Counter({(imei, day, kind): n for imei, day, kind, n in rows})


def test_alarms_daily_counts_equal_the_world_alarms(warehouse: Warehouse) -> None:
    expected = _world_alarm_counts(warehouse)
    assert sum(expected.values()) > 0
    assert _alarms_daily(warehouse.path, expected) == expected


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


PUSH_MODELS = ("stg_tracksolid__push_alarms stg_tracksolid__push_heartbeats stg_tracksolid__push_fault_codes "
               "fct_alarms alarms_daily fct_device_heartbeats fct_dtc_codes")


def test_pushed_and_polled_alarms_count_once_and_heartbeats_and_dtc_reach_core(
        warehouse: Warehouse, tmp_path: Path) -> None:
    # Every World alarm of the demo's days is in the warehouse already, polled; the same alarms
    # pushed (as the receiver lands them) must not add one, and each is marked seen by both.
    from fleet_pipeline.ingest.warehouse import WarehouseResource
    from fleet_pipeline.sources.tracksolid.push_assets import PushLandingResource, push_assets
    from fleet_pipeline_tests.sources.tracksolid.push_landing_writer import land, world_pushes

    db = _copy_warehouse(warehouse, tmp_path)
    world = warehouse.world
    imeis = [d.imei for d in world.devices_on("tracksolid", at=warehouse.extracted_from)]
    pushed = [m for day in warehouse.days
              for m in world_pushes(world, imeis, day, kinds=("push_alarms", "push_heartbeats", "push_fault_codes"))]
    land(tmp_path / "landing", pushed)
    resources = {"tracksolid_push": PushLandingResource(landing_dir=str(tmp_path / "landing")),
                 "duckdb": WarehouseResource(database=str(db))}
    chosen = [a for a in push_assets if a.key.path[-1] in ("push_alarms", "push_heartbeats", "push_fault_codes")]
    for day in warehouse.days:
        assert materialize(chosen, partition_key=day.isoformat(), resources=resources,
                           instance=DagsterInstance.ephemeral()).success
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from raw_tracksolid.push_alarms").fetchall() == [
            (sum(m.push_path == "/pushalarm" for m in pushed),)]
    run_dbt(tmp_path, db, "build", "--select", PUSH_MODELS, "--indirect-selection", "cautious")

    expected = _world_alarm_counts(warehouse)
    assert _alarms_daily(db, expected) == expected
    with duckdb.connect(str(db), read_only=True) as con:
        via = dict(con.execute("select received_via, count(*) from core.fct_alarms where platform = 'tracksolid' "
                               "group by all").fetchall())
        heartbeats = con.execute("select imei, partition_date, heartbeats, last_heartbeat_at, last_power_level_pct, "
                                 "last_gsm_signal from core.fct_device_heartbeats").fetchall()
        codes = Counter(con.execute("select imei, partition_date, dtc_code from core.fct_dtc_codes").fetchall())
    tracksolid_alarms = sum(n for (imei, _, _), n in expected.items() if world.device(imei).platform == "tracksolid")
    assert via == {"poll+push": tracksolid_alarms}

    # The last heartbeat of each device-day, and what it said, as pushed.
    last: dict[tuple[str, date], tuple[int, datetime, int, int]] = {}
    for m in (m for m in pushed if m.push_path == "/pushhb"):
        at = datetime.fromisoformat(m.item["gateTime"])
        key = (m.item["deviceImei"], at.date())
        seen = last.get(key, (0, datetime.min, 0, 0))
        newest = (at, m.item["powerLevel"], m.item["gsmSign"]) if at > seen[1] else seen[1:]
        last[key] = (seen[0] + 1, *newest)
    assert last and {(imei, day): rest for imei, day, *rest in heartbeats} == {k: list(v) for k, v in last.items()}
    expected_codes = Counter((m.item["deviceImei"], datetime.fromisoformat(m.item["gateTime"]).date(), code)
                             for m in pushed if m.push_path == "/pushfaultinfo" for code in m.item["faultCodeList"])
    assert expected_codes and codes == expected_codes


def _world_pushes(warehouse: Warehouse) -> list:
    """What the Tracksolid sandbox pushed in the demo: the World's messages of its days sent by then."""
    from fleet_pipeline.sandbox.tracksolid.push import push_messages

    return [m for day in warehouse.days for m in push_messages(warehouse.world, day)
            if m.sent_at <= warehouse.extracted_from]


def test_the_demo_pushes_the_worlds_days_through_the_receiver_into_the_push_tables(warehouse: Warehouse) -> None:
    # The demo's push step: sandbox pusher -> receiver over HTTP -> landing files -> push loads.
    parse_time = datetime.fromisoformat
    pushed = _world_pushes(warehouse)
    by_path = Counter(m.path for m in pushed)
    assert by_path["/pushgps"] and by_path["/pushalarm"] and by_path["/pushhb"], by_path
    tables = {"push_gps": "/pushgps", "push_alarms": "/pushalarm", "push_heartbeats": "/pushhb",
              "push_fault_codes": "/pushfaultinfo", "push_events": "/pushevent", "push_obd": "/pushobd",
              "push_trip_reports": "/pushtripreport"}
    for table, path in tables.items():
        ids = query(warehouse, f"select msg_id from raw_tracksolid.{table}")
        assert Counter(i for (i,) in ids) == Counter(m.msg_id for m in pushed if m.path == path), table

    def items(path: str) -> list[dict]:
        return [m.item for m in pushed if m.path == path]

    assert Counter(query(warehouse, "select imei, gps_time, lat, lng, speed_kmh from raw_tracksolid.push_gps")) == \
        Counter((i["deviceImei"], parse_time(i["gpsTime"]), i["lat"], i["lng"], i["gpsSpeed"]) for i in items("/pushgps"))
    assert Counter(query(warehouse, "select imei, alarm_time, alarm_type_id, lat, lng from raw_tracksolid.push_alarms")) \
        == Counter((i["deviceImei"], parse_time(i["gateTime"]), str(i["alarmType"]), i["lat"], i["lng"])
                   for i in items("/pushalarm"))
    assert Counter(query(warehouse, "select imei, heartbeat_time, power_level_pct, gsm_signal "
                                    "from raw_tracksolid.push_heartbeats")) == \
        Counter((i["deviceImei"], parse_time(i["gateTime"]), i["powerLevel"], i["gsmSign"]) for i in items("/pushhb"))
    # Every Tracksolid alarm was both pushed and polled, and counts once (alarms_daily against the
    # World: test_alarms_daily_counts_equal_the_world_alarms).
    via = dict(query(warehouse, "select received_via, count(*) from core.fct_alarms where platform = 'tracksolid' "
                                "group by all"))
    assert via == {"poll+push": by_path["/pushalarm"]}


def test_device_health_shows_the_pushed_heartbeats_and_dtc_codes_of_the_world(warehouse: Warehouse) -> None:
    from fleet_pipeline.sandbox.world import telemetry

    world = warehouse.world
    # The devices the sandbox pushes for a day: those activated on Tracksolid when it begins.
    pushing = {day: {d.imei for d in world.devices_on("tracksolid", datetime.combine(day, datetime.min.time()))}
               for day in warehouse.days}
    rows = {(imei, day): rest for imei, day, *rest in query(
        warehouse, "select imei, partition_date, pushed_heartbeats, last_heartbeat_at, last_power_level_pct, "
                   "last_gsm_signal, dtc_codes_reported, dtc_codes from marts.device_health_daily "
                   "where platform = 'tracksolid'")}
    assert rows
    beats_seen = codes_seen = 0
    for (imei, day), row in rows.items():
        device = world.device(imei)
        beats = [b for d in warehouse.days if d <= day and imei in pushing[d]
                 for b in telemetry.heartbeats(world.seed, device, world.day(imei, d))]
        today = [b for b in beats if b.time.date() == day]
        last = max(beats, key=lambda b: b.time, default=None)
        reports = telemetry.fault_reports(world.seed, device, world.day(imei, day)) if imei in pushing[day] else []
        codes = [code for report in reports for code in report.codes]
        expected = [len(today), last and last.power_level, last and last.gsm_signal,
                    len(codes), ",".join(sorted(set(codes))) or None]
        assert [row[0], *row[2:]] == expected, (imei, day)
        # The latest of the pushed heartbeats and the one a positions snapshot reports.
        assert last is None or row[1] >= last.time, (imei, day, row[1], last)
        beats_seen += len(today)
        codes_seen += len(codes)
    assert beats_seen and codes_seen, "the World's demo days have no heartbeat or no DTC code: nothing tested"


def _served_devices(world: World) -> list:
    """Devices whose data reaches the warehouse: blocked Navixy trackers answer 217."""
    blocked = navixy.default_blocked_tracker_ids(world)
    return [d for d in world.devices if d.platform == "tracksolid" or navixy.tracker_id(d) not in blocked]


def _settled_device_days(warehouse: Warehouse) -> set[tuple[str, date]]:
    """Device-days whose every fix had reached the vendor before the demo started.

    Some devices keep a chunk of fixes in their buffer and upload it 1-3 days later (as real ones
    do); until then no vendor can serve it, so a stop inside it cannot be in the warehouse yet — the
    daily schedule's late-data re-runs pick it up. Which device-days are still waiting depends on
    the hour the suite runs, so the comparisons with the truth take the settled ones, and check
    that these are most of them.
    """
    settled = set()
    served = _served_devices(warehouse.world)
    for d in served:
        for day in warehouse.days:
            received = warehouse.world.day(d.imei, day).points["received_at"]
            if received.is_empty() or received.max() < warehouse.extracted_from:
                settled.add((d.imei, day))
    assert len(settled) >= 0.8 * len(served) * len(warehouse.days), "too few settled device-days to test"
    return settled


def test_derived_stops_have_95_percent_precision_and_recall(warehouse: Warehouse) -> None:
    # A derived stop matches a true stop of the same device that starts within 2 minutes of it;
    # true stops are the world's stationary spells of at least stop_min_duration_s (300 s).
    world = warehouse.world
    rows = query(warehouse, "select imei, platform, started_at from core.fct_stops where stop_source = 'derived'")
    tolerance = timedelta(minutes=2)
    settled = _settled_device_days(warehouse)
    for platform in ("tracksolid", "navixy"):
        truth = [(d.imei, s.start) for d in _served_devices(world) if d.platform == platform
                 for day in warehouse.days if (d.imei, day) in settled for s in world.day(d.imei, day).stops
                 if (s.end - s.start).total_seconds() >= 300]
        derived = [(imei, started) for imei, p, started in rows
                   if p == platform and (imei, started.date()) in settled]
        unmatched = list(derived)
        found = 0
        for imei, start in truth:
            match = next((c for c in unmatched if c[0] == imei and abs(c[1] - start) <= tolerance), None)
            if match is not None:
                unmatched.remove(match)
                found += 1
        assert len(truth) >= 20, f"{platform}: too few true stops to measure anything"
        recall, precision = found / len(truth), found / len(derived)
        assert recall >= 0.95 and precision >= 0.95, (platform, len(truth), len(derived), recall, precision)


@dataclass
class DayTruth:
    """One device-day of parking_daily as the World has it."""

    platform: str
    counts: dict[str, int]        # parking_count, idling_count, overnight_parking_count
    seconds: dict[str, float]     # parking_s, idling_s: the part of each stop inside the UTC day
    stops: int                    # stops contributing to the day (the 120 s tolerance is per stop)
    settled: bool                 # every fix and every stop end it needs is loaded
    pending: bool                 # fixes of the day were still in the device's buffer


def _parking_truth(world: World, days: list[date], extracted_from: datetime) -> dict[tuple[str, date], DayTruth]:
    """parking_daily per device-day from the World's stops that started on a loaded day.

    Counts go to the start day, durations to each UTC day a stop covers. A device-day is settled
    when every fix of the days its stops span reached the vendor before the demo started, and
    every stop covering it has ended where the pipeline can see the end: before the demo started
    on Tracksolid (its parking report lists a parking once it has ended), before the end of the
    last loaded day on Navixy (a derived stop ends at the next loaded fix).
    """
    horizon = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time())
    known_until = {"tracksolid": extracted_from, "navixy": horizon}

    def all_received(imei: str, day: date) -> bool:
        received = world.day(imei, day).points["received_at"]
        return received.is_empty() or received.max() < extracted_from

    truth = {}
    for d in _served_devices(world):
        stops = [s for day in days for s in world.day(d.imei, day).stops if s.kind == "parking"]
        for day in days:
            start = datetime.combine(day, datetime.min.time())
            end = start + timedelta(days=1)
            counts = {"parking_count": 0, "idling_count": 0, "overnight_parking_count": 0}
            seconds = {"parking_s": 0.0, "idling_s": 0.0}
            contributing, settled = 0, all_received(d.imei, day)
            for s in stops:
                inside = (min(s.end, end) - max(s.start, start)).total_seconds()
                if inside <= 0 and s.start.date() != day:
                    continue
                contributing += 1
                kind = "idling" if s.ignition_on else "parking"
                seconds[f"{kind}_s"] += max(inside, 0.0)
                if s.start.date() == day:
                    counts[f"{kind}_count"] += 1
                    counts["overnight_parking_count"] += kind == "parking" and s.end.date() > day
                settled &= s.end < known_until[d.platform]
                settled &= all(all_received(d.imei, x) for x in days if s.start.date() <= x <= s.end.date())
            if contributing:
                truth[(d.imei, day)] = DayTruth(d.platform, counts, seconds, contributing, settled,
                                                not all_received(d.imei, day))
    return truth


def _parking_daily(db: Path) -> dict[tuple[str, date], dict]:
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute("select * from marts.parking_daily")
        names = [c[0] for c in cursor.description]
        return {(r["imei"], r["day"]): r for r in (dict(zip(names, row)) for row in cursor.fetchall())}


def _differences(truth: DayTruth, row: dict | None) -> list[str]:
    """What parking_daily gets wrong for one device-day (nothing: exact, 120 s per stop)."""
    if row is None:
        return ["no row"]
    wrong = [f"{k} {row[k]} != {v}" for k, v in truth.counts.items() if row[k] != v]
    wrong += [f"{k} {row[k]} != {v:.0f}" for k, v in truth.seconds.items()
              if abs(row[k] - v) > 120 * truth.stops]
    if row["unknown_stop_count"]:
        wrong.append(f"{row['unknown_stop_count']} stops of unknown ignition")
    return wrong


def assert_parking_daily_equals_the_world(db: Path, days: list[date], world: World,
                                          extracted_from: datetime) -> dict[str, Counter]:
    """Settled device-days exact; a day that is not exact is provisional; only unsettled days are."""
    truth = _parking_truth(world, days, extracted_from)
    rows = _parking_daily(db)
    seen: dict[str, Counter] = {p: Counter() for p in ("tracksolid", "navixy")}
    for key, t in truth.items():
        row = rows.get(key)
        wrong = _differences(t, row)
        provisional = bool(row and row["is_provisional"])
        assert not (t.settled and wrong), (t.platform, key, "settled but", wrong, t)
        assert not (wrong and row and not provisional), (t.platform, key, "wrong and not provisional", wrong)
        assert not (provisional and t.settled), (t.platform, key, "provisional but settled in the World")
        if t.pending and row:
            counted = row["parking_count"] + row["idling_count"] + row["unknown_stop_count"]
            assert counted <= t.counts["parking_count"] + t.counts["idling_count"], (key, "double-counted", row)
        if t.settled:
            seen[t.platform].update({"device_days": 1, **t.counts})
    extra = {key for key, row in rows.items() if key not in truth and row["day"] in days}
    assert not extra, f"parking_daily has device-days with no stop in the World: {sorted(extra)[:5]}"
    return seen


def test_parking_and_idling_per_device_day_equal_the_world(warehouse: Warehouse) -> None:
    # Navixy's fixes carry no ignition: its ignition events tell parking from idling, as the
    # Tracksolid fixes and report do. A stop past midnight is one stop; its seconds go to each day.
    seen = assert_parking_daily_equals_the_world(warehouse.path, warehouse.days, warehouse.world,
                                                 warehouse.extracted_from)
    for platform, counted in seen.items():
        assert counted["device_days"] >= 3, f"{platform}: too few settled device-days to test: {counted}"
        assert counted["parking_count"] + counted["idling_count"] >= 5, f"{platform}: too few stops: {counted}"


def test_mileage_is_provisional_only_where_fixes_are_still_to_come(warehouse: Warehouse) -> None:
    # (That a day with fixes still in the buffer is provisional: the buffered-parking test below.)
    settled = _settled_device_days(warehouse)
    provisional = set(query(warehouse, "select imei, day from marts.mileage_daily where is_provisional"))
    assert not provisional & settled, sorted(provisional & settled)[:5]


def _copy_warehouse(warehouse: Warehouse, tmp: Path) -> Path:
    # The staging views name the file's catalog, so the copy keeps the file name.
    copy = tmp / warehouse.path.name
    shutil.copyfile(warehouse.path, copy)
    return copy


STOP_MODELS = "fct_track_points fct_alarms stg_navixy__states fct_stops parking_events parking_daily mileage_daily"


def test_a_day_loaded_later_ends_the_previous_days_open_stops(warehouse: Warehouse, tmp_path: Path) -> None:
    # Day by day, as the daily schedule runs dbt: after the first day alone its evening parkings
    # are open (provisional on Navixy, whose stops all come from the fixes); the second day's run
    # ends them in the first day's partition, which is then exact.
    db = _copy_warehouse(warehouse, tmp_path)
    first = warehouse.days[0]
    for n, day in enumerate(warehouse.days):
        run_dbt(tmp_path, db, "run", *(["--full-refresh"] if n == 0 else []), "--select", STOP_MODELS,
                "--vars", f"{{min_date: '{day}', max_date: '{day}'}}")
        assert_parking_daily_equals_the_world(db, warehouse.days[: n + 1], warehouse.world,
                                              warehouse.extracted_from)
    truth = _parking_truth(warehouse.world, warehouse.days, warehouse.extracted_from)
    ended_by_the_second_day = [key for key, t in truth.items()
                               if key[1] == first and t.platform == "navixy" and t.settled
                               and t.counts["overnight_parking_count"]]
    assert ended_by_the_second_day, "no settled Navixy parking from the first day into the second: nothing tested"


def _a_parking(world: World, truth: dict[tuple[str, date], DayTruth], platform: str, day: date,
               skip: str | None = None) -> tuple[str, Stop]:
    """An engine-off parking of at least 90 minutes, within the day, of a settled device-day."""
    for d in _served_devices(world):
        t = truth.get((d.imei, day))
        if d.platform != platform or d.imei == skip or t is None or not t.settled:
            continue
        for s in world.day(d.imei, day).stops:
            if (s.kind == "parking" and not s.ignition_on and s.end.date() == day
                    and s.end - s.start >= timedelta(minutes=90)):
                return d.imei, s
    raise AssertionError(f"no settled {platform} parking of 90 minutes on {day}: nothing to test")


def test_a_parking_whose_first_fixes_are_still_buffered_is_counted_once(warehouse: Warehouse, tmp_path: Path) -> None:
    # The arrival and the first 25 minutes of a parking still in the device's buffer (as when a
    # late upload is pending): the stop derived from the remaining fixes starts 25 minutes after
    # the reported one. It is the same stop (they overlap), counted once, and the day is provisional.
    # A Navixy device without any ignition source: its stops are `unknown`, never parking.
    db = _copy_warehouse(warehouse, tmp_path)
    world, day = warehouse.world, warehouse.days[0]
    truth = _parking_truth(world, warehouse.days, warehouse.extracted_from)
    buffered = {platform: _a_parking(world, truth, platform, day) for platform in ("tracksolid", "navixy")}
    no_ignition = _a_parking(world, truth, "navixy", day, skip=buffered["navixy"][0])[0]
    with duckdb.connect(str(db)) as con:
        for platform, (imei, stop) in buffered.items():
            con.execute(f"delete from raw_{platform}.track_points where imei = ? and gps_time between ? and ?",
                        [imei, stop.start - timedelta(minutes=25), stop.start + timedelta(minutes=25)])
        con.execute("delete from raw_navixy.events where imei = ? and event_type = 'input_change'", [no_ignition])
        con.execute("delete from raw_navixy.states where imei = ?", [no_ignition])
    run_dbt(tmp_path, db, "run", "--select", STOP_MODELS)

    rows = _parking_daily(db)
    with duckdb.connect(str(db), read_only=True) as con:
        for platform, (imei, stop) in buffered.items():
            overlapping = con.execute("select stop_source, started_at from marts.parking_events where imei = ? "
                                      "and started_at < ? and ended_at > ?", [imei, stop.end, stop.start]).fetchall()
            assert len(overlapping) == 1, (platform, imei, stop, overlapping)
            row, expected = rows[(imei, day)], truth[(imei, day)].counts
            assert row["is_provisional"], (platform, imei, "a day with buffered fixes is provisional")
            assert row["parking_count"] == expected["parking_count"], (platform, imei, row, expected)
            assert row["idling_count"] == expected["idling_count"], (platform, imei, row, expected)
            (mileage_provisional,) = con.execute("select is_provisional from marts.mileage_daily "
                                                 "where imei = ? and day = ?", [imei, day]).fetchone()
            assert mileage_provisional, (platform, imei, "its mileage can still change")
        kinds = dict(con.execute("select stop_kind, count(*) from marts.parking_events where imei = ? "
                                 "group by all", [no_ignition]).fetchall())
    expected = truth[(no_ignition, day)].counts
    assert kinds.keys() == {"unknown"}, (no_ignition, kinds)
    assert rows[(no_ignition, day)]["unknown_stop_count"] == expected["parking_count"] + expected["idling_count"]

def test_firmware_shares_equal_the_world(warehouse: Warehouse) -> None:
    # Teltonika FOTA's daily snapshot is the firmware history: per model and snapshot day, the
    # devices on each version and the share on the newest campaign's target are the world's.
    world = warehouse.world
    snapshots = query(warehouse, "select imei, snapshot_date, max(snapshot_at) from staging.stg_teltonika__devices "
                                 "group by all")
    expected: Counter[tuple[str, date, str]] = Counter()
    for imei, day, at in snapshots:
        expected[(world.device(imei).model.replace("-", ""), day, world.firmware_at(imei, at))] += 1
    rows = query(warehouse, "select model_key, day, firmware_version, devices_on_version, target_version, "
                            "share_on_target from marts.firmware_rollout where model_key like 'FM%' "
                            "and devices_on_version is not null")
    assert Counter({(m, d, v): n for m, d, v, n, _, _ in rows}) == expected
    for model, day, _, _, target, share in rows:
        campaign = max((c for c in world.campaigns if c.model.replace("-", "") == model and c.start_day <= day),
                       key=lambda c: c.start_day)
        assert target == campaign.target_version, model
        on_target = sum(n for (m, d, v), n in expected.items() if (m, d) == (model, day) and v == target)
        on_model = sum(n for (m, d, _), n in expected.items() if (m, d) == (model, day))
        assert share == pytest.approx(on_target / on_model)


def test_stock_daily_equals_the_world_stock_and_activations(warehouse: Warehouse) -> None:
    # Every loaded day and the snapshot day: activations per model are the world's; the snapshot's
    # stock is the world's, kept and flagged where Telesto has no figure or shows it oversold.
    world = warehouse.world
    rows = query(warehouse, "select product_id, day, model_key, stock_on_hand, stock_flag, activations, "
                            "snapshot_at from marts.stock_daily")
    models = {p.product_id: p.model for p in world.products}
    assert {r[0] for r in rows} == set(models)
    snapshot_days = {r[1] for r in rows if r[6] is not None}
    assert set(warehouse.days) | snapshot_days == {r[1] for r in rows}
    flags: Counter[str | None] = Counter()
    for product_id, day, model_key, stock, flag, activations, snapshot_at in rows:
        model = models[product_id]
        assert model_key == (model.replace("-", "") if model else None)
        assert activations == (world.activations_on(model, day) if model else None), (product_id, day)
        if snapshot_at is None:
            assert (stock, flag) == (None, "no_snapshot")
            continue
        assert stock == world.stock_on(product_id, day), product_id
        assert flag == ("stock_unknown" if stock is None else "oversold" if stock < 0 else None), product_id
        flags[flag] += 1
    assert flags["stock_unknown"] == 1   # the accessory whose stock Telesto does not count


def test_teltonika_firmware_per_day_is_the_world_version(warehouse: Warehouse) -> None:
    rows = query(warehouse, """
        select f.imei, f.firmware_version, t.snapshot_at
        from core.dim_device_firmware_daily as f
        join staging.stg_teltonika__devices as t using (imei, snapshot_date)
        where f.firmware_platform = 'teltonika'""")
    assert rows, "no Teltonika-managed device in the warehouse"
    for imei, version, snapshot_at in rows:
        assert version == warehouse.world.firmware_at(imei, snapshot_at), imei


# World OTA status -> the outcome fct_ota_attempts gives it on either platform.
OUTCOME = {3: "succeeded", 4: "failed", -1: "failed", 1: "in_progress", 2: "in_progress"}


def _managed(world: World, platform: str) -> list:
    return [d for d in world.devices if d.firmware_platform == platform]


def _aovx_retained(world: World, at: datetime) -> dict[str, list]:
    """Per AOVX device, the attempts AOVX still reports at `at`: sent, last updated within its retention."""
    kept_from = at - timedelta(days=sandbox_aovx.RETENTION_DAYS)
    return {d.imei: [a for a in world.ota_attempts(d.imei) if a.sent_at <= at and a.last_update_at(at) >= kept_from]
            for d in _managed(world, "aovx")}


def _aovx_known_versions(world: World, at: datetime) -> dict[str, str]:
    """The World's version of each AOVX device where AOVX's OTA history can tell it, else 'unknown'.

    It can when the device has a retained successful attempt, or when the version before its
    first retained attempt's target was itself the target of one of its model's retained attempts.
    The version expected is the World's (firmware_at), not a re-derivation of the pipeline's rule.
    """
    retained = _aovx_retained(world, at)
    first_sent: dict[tuple[str, str], datetime] = {}
    for imei, attempts in retained.items():
        for a in attempts:
            key = (world.device(imei).model, a.version)
            first_sent[key] = min(first_sent.get(key, a.sent_at), a.sent_at)
    known: dict[str, str] = {}
    for imei, attempts in retained.items():
        model = world.device(imei).model
        tellable = any(a.status_at(at) == 3 for a in attempts)
        if attempts and not tellable:
            first_target = min(attempts, key=lambda a: a.sent_at).version
            tellable = any(m == model and t < first_sent[(model, first_target)] for (m, _), t in first_sent.items())
        known[imei] = world.firmware_at(imei, at) if tellable else "unknown"
    return known


def _loaded_at(warehouse: Warehouse) -> tuple[datetime, datetime]:
    """When the AOVX history was read (its window's end) and when the FOTA tasks were snapshot."""
    aovx_at = datetime.fromisoformat(_latest_metadata(warehouse, "raw_aovx", "ota_history")["window_end"])
    (tasks_at,), = query(warehouse, "select max(snapshot_at) from staging.stg_teltonika__tasks")
    return aovx_at, tasks_at


@pytest.mark.parametrize("built", ["warehouse", "firmware_warehouse"])
def test_firmware_rollout_covers_every_managed_model_with_the_worlds_versions(built: str, request) -> None:
    warehouse: Warehouse = request.getfixturevalue(built)
    # Every device a firmware platform manages is counted under its model: Teltonika at FOTA's
    # snapshot, AOVX from its OTA history; an AOVX device whose version no retained attempt tells
    # is counted under the version 'unknown', and share_on_target is over the devices of known version.
    # A Teltonika device FOTA does not list yet at its snapshot (installed that day, before its
    # first connection) is not managed yet.
    world = warehouse.world
    aovx_at, _ = _loaded_at(warehouse)
    aovx_known = _aovx_known_versions(world, aovx_at)
    fota_at = dict(((imei, day), at) for imei, day, at in query(
        warehouse, "select imei, snapshot_date, max(snapshot_at) from staging.stg_teltonika__devices group by all"))
    rows = query(warehouse, "select model_key, day, firmware_version, devices_on_version, model_devices, "
                            "devices_known_version, share_on_target, target_version from marts.firmware_rollout "
                            "where devices_on_version is not null")   # the snapshot days
    days = sorted({r[1] for r in rows})
    assert days, "firmware_rollout is empty"
    expected: Counter[tuple[str, date, str]] = Counter()
    for day in days:
        for d in world.devices:
            if d.firmware_platform is None or d.activation_date > day:
                continue
            if d.firmware_platform == "teltonika_fota" and (d.imei, day) not in fota_at:
                continue
            version = (world.firmware_at(d.imei, fota_at[(d.imei, day)]) if d.firmware_platform == "teltonika_fota"
                       else aovx_known[d.imei])
            expected[(d.model.replace("-", ""), day, version)] += 1
    assert Counter({(m, d, v): n for m, d, v, n, *_ in rows}) == expected
    assert {r[0] for r in rows} == {d.model.replace("-", "") for d in world.devices if d.firmware_platform}
    # Not vacuous: AOVX versions are known (how many depends on what AOVX still retains).
    assert any(v != "unknown" for (m, _, v) in expected if m.startswith("AOVX")), "no AOVX version known"
    for model, day, _, _, model_devices, known_devices, share, target in rows:
        counts = {v: n for (m, d, v), n in expected.items() if (m, d) == (model, day)}
        assert model_devices == sum(counts.values())
        assert known_devices == sum(n for v, n in counts.items() if v != "unknown")
        assert share == pytest.approx(counts.get(target, 0) / known_devices)


@pytest.mark.parametrize("built", ["warehouse", "firmware_warehouse"])
def test_ota_attempts_of_both_platforms_equal_the_worlds(built: str, request) -> None:
    warehouse: Warehouse = request.getfixturevalue(built)
    # fct_ota_attempts holds every attempt AOVX still reports and every FOTA firmware task, each
    # in its World state when read; firmware_rollout's attempt counts per model and day of the
    # latest status are the World's, on every model-day it has.
    world = warehouse.world
    aovx_at, tasks_at = _loaded_at(warehouse)
    truth: dict[tuple[str, datetime], tuple[str, object, datetime]] = {}
    for imei, attempts in _aovx_retained(world, aovx_at).items():
        for a in attempts:
            truth[(imei, a.sent_at.replace(microsecond=0))] = ("aovx", a, aovx_at)
    for d in _managed(world, "teltonika_fota"):
        for a in world.ota_attempts(d.imei):
            if a.sent_at <= tasks_at:
                truth[(d.imei, a.sent_at.replace(microsecond=0))] = ("teltonika", a, tasks_at)
    rows = query(warehouse, "select imei, date_trunc('second', sent_at), firmware_platform, target_version, outcome, "
                            "date_trunc('second', last_update_at) from core.fct_ota_attempts")
    assert {(imei, sent) for imei, sent, *_ in rows} == set(truth)
    assert {p for p, _, _ in truth.values()} == {"aovx", "teltonika"}, "attempts of both platforms in the World"
    for imei, sent, platform, target, outcome, updated in rows:
        expected_platform, attempt, at = truth[(imei, sent)]
        assert (platform, target, outcome) == (expected_platform, attempt.version, OUTCOME[attempt.status_at(at)])
        assert updated == attempt.last_update_at(at).replace(microsecond=0)
    # firmware_rollout: attempts, successes and failures per model and UTC day of the latest status
    per_day: Counter[tuple[str, date, str]] = Counter()
    for imei, _ in truth:
        platform, attempt, at = truth[(imei, _)]
        key = (world.device(imei).model.replace("-", ""), attempt.last_update_at(at).date())
        per_day[(*key, "attempts")] += 1
        per_day[(*key, OUTCOME[attempt.status_at(at)])] += 1
    marts = query(warehouse, "select distinct model_key, day, attempts, attempts_success, attempts_failed, "
                             "attempts_other, success_rate from marts.firmware_rollout")
    assert marts
    for model, day, attempts, succeeded, failed, other, rate in marts:
        assert (attempts, succeeded, failed, other) == (
            per_day[(model, day, "attempts")], per_day[(model, day, "succeeded")],
            per_day[(model, day, "failed")], per_day[(model, day, "in_progress")]), (model, day)
        assert rate == (pytest.approx(succeeded / attempts) if attempts else None)
    # Every model-day with attempts has a row, snapshot day or not (attempts used to show on
    # snapshot days only).
    with_attempts = {(m, d) for m, d, n, *_ in marts if n}
    assert with_attempts == {(m, d) for (m, d, kind), n in per_day.items() if kind == "attempts" and n}


def _latest_metadata(wh: Warehouse, *key: str, partition: date | None = None) -> dict:
    with DagsterInstance.from_config(str(wh.data_dir / "dagster_home")) as instance:
        if partition is None:
            event = instance.get_latest_materialization_event(AssetKey(list(key)))
        else:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(list(key)), asset_partitions=[partition.isoformat()]),
                limit=1, ascending=False).records
            event = records[0].event_log_entry if records else None
    assert event is not None and event.asset_materialization is not None, f"{key} {partition} never materialized"
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def test_marts_carry_their_key_figures_as_dagster_metadata(warehouse: Warehouse) -> None:
    # The demo builds both days in one dbt run; each day's partition carries that day's figures.
    for day in warehouse.days:
        mileage = _latest_metadata(warehouse, "marts", "mileage_daily", partition=day)
        (km, device_days), = query(warehouse, "select round(sum(chosen_km), 1), count(*) "
                                              f"from marts.mileage_daily where day = '{day}'")
        assert mileage["fleet_km"] == pytest.approx(km, abs=0.1), day
        assert mileage["device_days"] == device_days, day
        alarms = _latest_metadata(warehouse, "marts", "alarms_daily", partition=day)
        # Alarms apart from the ignition and trip events of the same feed (the World's alarms).
        expected = world_figures.alarms_per_vendor(warehouse.world, day)
        assert alarms["alarms"] == sum(expected.values()), day
        for platform, n in expected.items():
            assert alarms[f"alarms_{platform}"] == n, (day, platform)
        for kind, n in query(warehouse, "select canonical_type, sum(alarm_count) from marts.alarms_daily "
                                        f"where day = '{day}' group by 1"):
            table = "events_by_type" if kind in EVENT_TYPES else "alarms_by_type"
            assert f"| {kind} | {n:,} |" in alarms[table], (kind, table)
        for platform, km in world_figures.km_per_vendor(warehouse.world, day).items():
            assert mileage[f"km_{platform}"] == pytest.approx(km, rel=0.01), (day, platform)
    rollout = _latest_metadata(warehouse, "marts", "firmware_rollout")
    for model, target in query(warehouse, "select distinct model_key, target_version from marts.firmware_rollout"):
        assert f"| {model} |" in rollout["rollout_by_model"] and target in rollout["rollout_by_model"]
    stock = _latest_metadata(warehouse, "marts", "stock_daily")
    (units,), = query(warehouse, "select sum(stock_on_hand) from marts.stock_daily "
                                 "where day = (select max(day) from marts.stock_daily)")
    assert stock["units_on_hand"] == units
    assert _latest_metadata(warehouse, "marts", "parking_daily")["parkings"] > 0


READER = """
import sys, time, duckdb
path, stop_file, out = sys.argv[1:4]
reads, inodes = 0, set()
import os, pathlib
while not pathlib.Path(stop_file).exists():
    inodes.add(os.stat(path).st_ino)
    with duckdb.connect(path, read_only=True) as conn:
        reads += conn.execute("select count(*) > 0 from marts.mileage_daily").fetchone()[0]
    time.sleep(0.05)
pathlib.Path(out).write_text(f"{reads} {len(inodes)}")
"""


def test_serving_copy_stays_readable_while_a_partition_is_rematerialized(warehouse: Warehouse) -> None:
    # A separate process keeps opening the BI copy read-only while the pipeline re-materializes
    # yesterday's partition (sources, dbt, then a new serving copy swapped in): every read succeeds
    # and the reader sees the new file appear.
    serving = warehouse.data_dir / "serving" / "fleet.duckdb"
    stop, out = warehouse.data_dir / "reader.stop", warehouse.data_dir / "reader.out"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(serving), str(stop), str(out)],
                              stderr=subprocess.PIPE, text=True)
    try:
        run([str(BIN / "fleet-pipeline"), "demo", "--days", "1"], demo_env(warehouse.data_dir), REPO)
    finally:
        stop.touch()
        _, errors = reader.communicate(timeout=60)
    assert reader.returncode == 0, f"the reader failed while the pipeline ran:\n{errors[-3000:]}"
    reads, files_seen = map(int, out.read_text().split())
    assert reads >= 20 and files_seen >= 2, (reads, files_seen)


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


def test_serving_parquet_files_have_the_marts_column_types(warehouse: Warehouse) -> None:
    # A BI tool reading the Parquet export sees the same types as one reading the DuckDB copy:
    # DuckDB writes HUGEINT (what it sums integers to) as DOUBLE, so marts must not hold one.
    parquet_dir = warehouse.data_dir / "serving" / "parquet"
    marts = [name for (name,) in query(warehouse, "select table_name from information_schema.tables "
                                                  "where table_schema = 'marts' order by 1")]
    assert marts and sorted(p.stem for p in parquet_dir.glob("*.parquet")) == marts
    with duckdb.connect() as con:
        for mart in marts:
            in_duckdb = query(warehouse, "select column_name, data_type from information_schema.columns "
                                         f"where table_schema = 'marts' and table_name = '{mart}' "
                                         "order by ordinal_position")
            in_parquet = [(name, kind) for name, kind, *_ in
                          con.execute(f"describe select * from '{parquet_dir / (mart + '.parquet')}'").fetchall()]
            assert in_parquet == in_duckdb, mart
