"""The KPI marts (issue 20) against the sandbox World's own answers (`sandbox/world/kpis.py`).

The warehouse is the session's shared demo (`fleet_pipeline_tests/shared_demo.py`: a real
`fleet-pipeline demo`, 20 devices, two UTC days, whose devices without a vendor time zone
(Tracksolid's) are configured in the fleet's zone, then `dbt build`), read only: a test that runs
dbt copies the file first. Every figure expected here comes from the World (its motion, stops,
alarms and day statuses), never from the pipeline; a device-day is compared where every fix of it
had reached the vendor when the demo started (a late upload still in a device's buffer is for the
daily re-runs to pick up).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from fleet_pipeline import settings
from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.navixy.synthesis import GROUP_ID_BASE
from fleet_pipeline.sandbox.world import World, kpis
from fleet_pipeline_tests.reporting.test_dbt_models import (
    Warehouse,
    _served_devices,
    _settled_device_days,
    query,
)
from fleet_pipeline_tests.shared_demo import CONFIGURED_ZONE, N_DEVICES, SEED, SharedDemo, run_dbt

pytestmark = pytest.mark.timeout(1800)

# The documented default working week (docs/configuration.md), which the demo runs with.
WORKING_WEEK = settings.WorkingHours(frozenset({1, 2, 3, 4, 5}), 8 * 60, 18 * 60)
SPEED_LIMIT_KMH = 90          # FLEET_SPEED_LIMIT_KMH's default
SPEED_NOISE_KMH = 3.0         # a fix's speed is its stretch's true speed within this (sandbox daygen)
PER_STOP_S = 120              # the stop models' accuracy per stop (test_dbt_models)


@pytest.fixture(scope="module")
def warehouse(shared_demo: SharedDemo) -> Warehouse:
    # The shared folder itself: every test here opens it read-only or copies the file first.
    return Warehouse(path=shared_demo.warehouse, days=shared_demo.days, world=World(seed=SEED, n_devices=N_DEVICES),
                     data_dir=shared_demo.data_dir, extracted_from=shared_demo.extracted_from)


def _rows(wh: Warehouse | Path, sql: str) -> list[dict]:
    path = wh if isinstance(wh, Path) else wh.path
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(sql)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _blocked(world: World) -> set[str]:
    blocked = navixy.default_blocked_tracker_ids(world)
    return {d.imei for d in world.devices if d.platform == "navixy" and navixy.tracker_id(d) in blocked}


def _zone_of(world: World, imei: str) -> str:
    # Navixy tells its user's zone (the sandbox user's is the fleet's); the others are configured.
    return kpis.FLEET_TIME_ZONE if world.device(imei).platform == "navixy" else CONFIGURED_ZONE


def _local_date(day: date, zone: str) -> date:
    noon = datetime.combine(day, time(12)).replace(tzinfo=timezone.utc)
    return noon.astimezone(ZoneInfo(zone)).date()


# ---------------------------------------------------------------- local time

def test_each_device_has_its_vendors_zone_or_the_configured_one(warehouse: Warehouse) -> None:
    rows = {r["imei"]: r for r in _rows(warehouse, "select imei, time_zone, time_zone_source from core.dim_device_time_zones")}
    assert rows
    for imei, row in rows.items():
        platform = warehouse.world.device(imei).platform
        assert (row["time_zone"], row["time_zone_source"]) == (
            (kpis.FLEET_TIME_ZONE, "vendor") if platform == "navixy" else (CONFIGURED_ZONE, "configured")), imei


MARTS_WITH_A_DAY = ("mileage_daily", "alarms_daily", "parking_daily", "parking_events", "utilisation_daily",
                    "speeding_daily", "device_health_daily", "geofence_visits", "long_stops")


def test_every_device_mart_has_the_local_date_of_its_utc_day(warehouse: Warehouse) -> None:
    checked = 0
    for mart in MARTS_WITH_A_DAY:
        for row in _rows(warehouse, f"select imei, partition_date, local_date from marts.{mart}"):
            zone = _zone_of(warehouse.world, row["imei"])
            assert row["local_date"] == _local_date(row["partition_date"], zone), (mart, row)
            checked += 1
    for mart in ("firmware_rollout", "stock_daily"):   # fleet-wide rows: the configured zone
        for row in _rows(warehouse, f"select day, local_date from marts.{mart}"):
            assert row["local_date"] == _local_date(row["day"], CONFIGURED_ZONE), (mart, row)
    assert checked > 100


def test_a_configured_zone_far_east_moves_local_dates_and_the_working_hours(warehouse: Warehouse,
                                                                           tmp_path: Path) -> None:
    # In UTC+14 a UTC day's noon is 02:00 the next local day; 08:00-18:00 local is 18:00-04:00 UTC,
    # so the Tracksolid devices' km (driven 04:30-15:00 UTC) are after hours, and Saturday starts
    # on Friday 10:00 UTC. Navixy's devices keep their vendor's zone.
    db = tmp_path / warehouse.path.name
    shutil.copyfile(warehouse.path, db)
    far_east = "Pacific/Kiritimati"
    run_dbt(tmp_path, db, {**os.environ, "FLEET_DEFAULT_TIME_ZONE": far_east}, "run", "--select",
         "dim_device_time_zones", "utilisation_daily")
    rows = _rows(db, "select imei, platform, partition_date, local_date, time_zone, km, km_working_hours, "
                     "km_after_hours, km_weekend from marts.utilisation_daily where km is not null")
    settled = _settled_device_days(warehouse)
    compared = 0
    for row in rows:
        zone = far_east if row["platform"] == "tracksolid" else kpis.FLEET_TIME_ZONE
        assert (row["time_zone"], row["local_date"]) == (zone, _local_date(row["partition_date"], zone)), row
        if (row["imei"], row["partition_date"]) in settled and row["platform"] == "tracksolid":
            truth = kpis.km_by_working_time(warehouse.world, row["imei"], row["partition_date"], zone, WORKING_WEEK)
            _assert_km_split(row, truth)
            compared += row["km"] > 0
    assert compared >= 5


# ---------------------------------------------------------------- utilisation

def _assert_km_split(row: dict, truth: dict[str, float]) -> None:
    # The stretch between two fixes goes to the side of a boundary its middle lies on: within a
    # few hundred metres of the true split, however the km are scaled.
    for part in ("working_hours", "after_hours", "weekend"):
        assert row[f"km_{part}"] == pytest.approx(truth[part], abs=0.3 + 0.01 * truth[part]), (part, row, truth)
    assert row["km_working_hours"] + row["km_after_hours"] + row["km_weekend"] == pytest.approx(row["km"])


def test_utilisation_daily_equals_the_world(warehouse: Warehouse) -> None:
    world = warehouse.world
    rows = {(r["imei"], r["partition_date"]): r for r in _rows(warehouse, "select * from marts.utilisation_daily")}
    settled = _settled_device_days(warehouse)
    blocked = _blocked(world)
    # Every device-day with fixes has its row (parked days too), and a blocked tracker every day.
    expected_keys = {(d.imei, day) for d in _served_devices(world) for day in warehouse.days
                     if world.day(d.imei, day).status in ("parked", "driving")}
    assert set(rows) == expected_keys | {(imei, day) for imei in blocked for day in warehouse.days}
    seen = {"driving": 0, "idle": 0, "after_hours_km": 0.0, "working_hours_km": 0.0, "unused": 0}
    for (imei, day), row in rows.items():
        if imei in blocked:
            assert [row[k] for k in ("driving_s", "engine_on_s", "idle_s", "km", "is_used")] == [None] * 5, row
            continue
        if (imei, day) not in settled:
            continue
        motion = world.motion(imei, day)
        idle_stops = sum(1 for *_, ignition in motion.parkings if ignition)
        driving, idle = kpis.driving_s(world, imei, day), kpis.idle_s(world, imei, day)
        assert row["driving_s"] == pytest.approx(driving, abs=2 * len(motion.trips)), (imei, day)
        assert row["idle_s"] == pytest.approx(idle, abs=PER_STOP_S * idle_stops), (imei, day)
        assert row["engine_on_s"] == pytest.approx(kpis.engine_on_s(world, imei, day),
                                                   abs=2 * len(motion.trips) + PER_STOP_S * idle_stops), (imei, day)
        assert row["is_used"] == bool(motion.trips), (imei, day)
        if driving + idle:
            assert row["idle_share"] == pytest.approx(idle / (driving + idle), abs=0.02), (imei, day)
        truth = kpis.km_by_working_time(world, imei, day, _zone_of(world, imei), WORKING_WEEK)
        _assert_km_split(row, truth)
        seen["driving"] += driving > 0
        seen["idle"] += idle > 0
        seen["unused"] += not motion.trips
        seen["after_hours_km"] += truth["after_hours"]
        seen["working_hours_km"] += truth["working_hours"]
    assert seen["driving"] >= 10 and seen["idle"] >= 5, seen
    assert seen["after_hours_km"] > 50 and seen["working_hours_km"] > 50, seen


def test_mileage_and_utilisation_carry_each_devices_vendor_group(warehouse: Warehouse) -> None:
    """Mileage and utilisation per account and group, for the team that manages each: the group is the
    vendor's, which the sandbox derives from the device's World account (Navixy: one group per
    account, ids from GROUP_ID_BASE in the World's account order; Tracksolid: one "Default group")."""
    world = warehouse.world
    navixy_accounts = [a for a in world.accounts if a.platform == "navixy"]
    navixy_group = {a.account_id: str(GROUP_ID_BASE + n + 1) for n, a in enumerate(navixy_accounts)}
    for mart in ("mileage_daily", "utilisation_daily"):
        rows = _rows(warehouse, f"select imei, platform, group_name from marts.{mart}")
        assert rows, mart
        for row in rows:
            device = world.device(row["imei"])
            expected = navixy_group.get(device.account_id, "0") if row["platform"] == "navixy" else "Default group"
            assert row["group_name"] == expected, (mart, row)
    assert len({row["group_name"] for row in _rows(warehouse, "select group_name from marts.mileage_daily")}) >= 2


# ---------------------------------------------------------------- speeding

def test_speeding_daily_equals_the_world(warehouse: Warehouse) -> None:
    world = warehouse.world
    rows = _rows(warehouse, "select * from marts.speeding_daily")
    settled = _settled_device_days(warehouse)
    blocked = _blocked(world)
    alarms = seconds = 0
    for row in rows:
        imei, day = row["imei"], row["partition_date"]
        assert row["speed_limit_kmh"] == SPEED_LIMIT_KMH
        if imei in blocked:
            assert row["overspeed_count"] is None, row
            continue
        count = len(kpis.overspeed_alarms(world, imei, day))
        assert row["overspeed_count"] == count, row
        true_km = world.day(imei, day).true_km
        if true_km > 0:
            assert row["overspeed_per_100km"] == pytest.approx(count * 100 / true_km, rel=0.01), row
        if (imei, day) in settled:
            # A fix's speed is its stretch's within SPEED_NOISE_KMH: stretches that close to the
            # limit may count or not; every stretch clearly above it counts in full.
            surely = kpis.seconds_above(world, imei, day, SPEED_LIMIT_KMH + SPEED_NOISE_KMH)
            maybe = kpis.seconds_above(world, imei, day, SPEED_LIMIT_KMH - SPEED_NOISE_KMH)
            assert surely <= row["seconds_above_limit"] <= maybe, (row, surely, maybe)
            seconds += surely
        alarms += count
    assert alarms > 0 and seconds > 0, "no overspeed in the World's days: nothing tested"


# ---------------------------------------------------------------- device health

def _received_points(warehouse: Warehouse, imei: str, day: date):
    points = warehouse.world.day(imei, day).points
    return points.filter(points["received_at"] < warehouse.extracted_from)


def _last_day_with_fixes(world: World, imei: str, day: date) -> date | None:
    """The World's last day with fixes up to `day` (at most 60 days back)."""
    for back in range(60):
        d = day - timedelta(days=back)
        if world.day(imei, d).status in ("parked", "driving"):
            return d
    return None


def test_device_health_daily_equals_the_world(warehouse: Warehouse) -> None:
    world = warehouse.world
    rows = {(r["imei"], r["partition_date"]): r for r in _rows(warehouse, "select * from marts.device_health_daily")}
    listed = {imei for (imei,) in query(warehouse, "select imei from core.dim_devices")}
    assert set(rows) == {(imei, day) for imei in listed for day in warehouse.days
                         if world.device(imei).activation_date <= day}
    blocked = _blocked(world)
    settled = _settled_device_days(warehouse)
    first = warehouse.days[0]
    offline_seen = 0
    for (imei, day), row in rows.items():
        if imei in blocked:
            assert (row["is_enabled"], row["fix_count"], row["is_offline"]) == (False, 0, True), row
            continue
        assert row["is_enabled"], row
        if world.day(imei, day).status == "offline":
            assert row["fix_count"] == 0, row
        if all((imei, d) in settled for d in warehouse.days if d <= day):
            assert row["fix_count"] == _received_points(warehouse, imei, day).height, row
            last_day = _last_day_with_fixes(world, imei, day)
            days_without = None if last_day is None else (day - last_day).days
            if last_day is not None and last_day >= first:
                last = world.day(imei, last_day).points["gps_time"].max()
                assert (row["last_fix_at"], row["days_without_fixes"]) == (last, days_without), row
            if days_without is None or days_without >= settings.DEFAULT_OFFLINE_DAYS or last_day >= first:
                assert row["is_offline"] == (days_without is None or days_without >= settings.DEFAULT_OFFLINE_DAYS), row
                offline_seen += row["is_offline"]
    assert offline_seen >= 1, "no offline spell in the World's days: nothing tested"


def test_on_the_snapshot_day_a_device_is_offline_from_the_configured_days_without_a_fix(warehouse: Warehouse,
                                                                                         tmp_path: Path) -> None:
    # The demo's snapshots (today) tell each device's last fix, its state, battery and signal. With
    # FLEET_OFFLINE_DAYS set to the longest silence in the World, the device silent that long is
    # offline on the snapshot day and every other is not.
    world = warehouse.world
    (today,), = query(warehouse, "select max(snapshot_date) from staging.stg_tracksolid__positions")
    snapshot_at = dict(query(warehouse, "select imei, max(snapshot_at) from ("
                                        "select imei, snapshot_at from staging.stg_tracksolid__positions union all "
                                        "select imei, snapshot_at from staging.stg_navixy__states) group by imei"))
    last_fix = {imei: world.last_fix(imei, at) for imei, at in snapshot_at.items()}
    silence = {imei: (today - fix["gps_time"].date()).days for imei, fix in last_fix.items() if fix is not None}
    longest = max(silence.values())
    assert longest >= 2, f"no device silent for days in the World: nothing tested ({silence})"
    db = tmp_path / warehouse.path.name
    shutil.copyfile(warehouse.path, db)
    run_dbt(tmp_path, db, {**os.environ, "FLEET_OFFLINE_DAYS": str(longest)}, "run", "--select", "device_health_daily",
         "--vars", f"{{min_date: '{today}', max_date: '{today}'}}")
    rows = _rows(db, f"select * from marts.device_health_daily where partition_date = '{today}'")
    listed = {imei for (imei,) in query(warehouse, "select imei from core.dim_devices")}
    assert {r["imei"] for r in rows} == {imei for imei in listed if world.device(imei).activation_date <= today}
    # Tracksolid sends an expired device's position as (0, 0): validation refuses it, counted on its day.
    expired = {d.imei for d in world.devices if d.platform == "tracksolid" and d.expiration_date < today}
    assert expired and {r["imei"] for r in rows if r["rejected_rows"]} == expired
    for row in rows:
        imei = row["imei"]
        if imei in _blocked(world) or imei in expired:
            continue
        assert row["last_fix_at"] == last_fix[imei]["gps_time"], row
        assert row["days_without_fixes"] == silence[imei], row
        assert row["is_offline"] == (silence[imei] >= longest), row
        assert row["last_state"] is not None and row["last_heartbeat_at"] >= row["last_fix_at"], row
        reported = ("battery_pct", "gsm_signal_pct") if row["platform"] == "navixy" else ("power_v",)
        assert all(row[k] is not None for k in reported), row
    assert sum(r["is_offline"] for r in rows if r["imei"] not in _blocked(world)) >= 1


# ---------------------------------------------------------------- geofence visits

def test_geofence_visits_equal_the_world(warehouse: Warehouse) -> None:
    world = warehouse.world
    status = {(True, True): "closed", (False, True): "no_entry", (True, False): "open"}
    expected = {(d.imei, v.zone, v.entered_at, v.exited_at, status[(v.entered_at is not None, v.exited_at is not None)])
                for d in _served_devices(world) for v in kpis.zone_visits(world, d.imei, warehouse.days)}
    rows = _rows(warehouse, "select imei, zone, entered_at, exited_at, visit_status, dwell_s from marts.geofence_visits")
    assert {(r["imei"], r["zone"], r["entered_at"], r["exited_at"], r["visit_status"]) for r in rows} == expected
    closed = [r for r in rows if r["visit_status"] == "closed"]
    assert len(closed) >= 5, "too few closed visits to test anything"
    for r in closed:
        assert r["dwell_s"] == (r["exited_at"] - r["entered_at"]).total_seconds()
    assert {p for p in query(warehouse, "select distinct platform from marts.geofence_visits")} == {
        ("tracksolid",), ("navixy",)}


# ---------------------------------------------------------------- long stops

@dataclass(frozen=True)
class LongStop:
    imei: str
    start: datetime
    end: datetime
    settled: bool


def _long_stops(warehouse: Warehouse, min_hours: float) -> list[LongStop]:
    """The World's stops starting on a loaded day of at least min_hours, and whether the pipeline
    can know them whole (their end seen: before the demo on Tracksolid, whose report lists ended
    parkings, before the end of the last loaded day on Navixy, whose stops end at a loaded fix)."""
    world = warehouse.world
    horizon = datetime.combine(warehouse.days[-1] + timedelta(days=1), time())
    settled_days = _settled_device_days(warehouse)
    out = []
    for d in _served_devices(world):
        known_until = warehouse.extracted_from if d.platform == "tracksolid" else horizon
        for day in warehouse.days:
            for s in world.day(d.imei, day).stops:
                if s.kind == "parking" and s.end - s.start >= timedelta(hours=min_hours):
                    out.append(LongStop(d.imei, s.start, s.end, s.end < known_until and all(
                        (d.imei, x) in settled_days for x in warehouse.days if x >= day)))
    return out


def _assert_long_stops(db: Path, truth: list[LongStop], min_hours: float) -> int:
    rows = _rows(db, "select imei, started_at, duration_s, is_open, is_provisional from marts.long_stops")
    assert all(r["duration_s"] >= min_hours * 3600 for r in rows)
    matched = 0
    for t in truth:
        hits = [r for r in rows if r["imei"] == t.imei and abs(r["started_at"] - t.start) <= timedelta(seconds=PER_STOP_S)]
        if t.settled:
            assert len(hits) == 1 and not hits[0]["is_open"], (t, hits)
            assert hits[0]["duration_s"] == pytest.approx((t.end - t.start).total_seconds(), abs=2 * PER_STOP_S), t
            matched += 1
    for r in rows:
        if not r["is_provisional"]:
            assert any(t.imei == r["imei"] and abs(r["started_at"] - t.start) <= timedelta(seconds=PER_STOP_S)
                       for t in truth), ("a long stop the World does not have", r)
    return matched


def test_long_stops_equal_the_world(warehouse: Warehouse, tmp_path: Path) -> None:
    _assert_long_stops(warehouse.path, _long_stops(warehouse, 24), 24)
    # Two days hold few stops of a day or more: a 12-hour threshold takes in the evening parkings
    # that ended on the second day, so the comparison has stops to compare.
    db = tmp_path / warehouse.path.name
    shutil.copyfile(warehouse.path, db)
    run_dbt(tmp_path, db, {**os.environ, "FLEET_DEFAULT_TIME_ZONE": CONFIGURED_ZONE}, "run", "--select", "long_stops",
         "--vars", "{long_stop_min_hours: 12}")
    assert _assert_long_stops(db, _long_stops(warehouse, 12), 12) >= 5


# ---------------------------------------------------------------- incremental by day

KPI_MARTS = ("utilisation_daily", "speeding_daily", "device_health_daily", "geofence_visits", "long_stops")
UPSTREAM = "fct_track_points fct_trips fct_alarms stg_navixy__states fct_stops parking_events parking_daily mileage_daily"


def test_day_by_day_runs_build_the_kpi_marts_a_full_build_does(warehouse: Warehouse, tmp_path: Path) -> None:
    # As the daily schedule runs dbt: the first day alone (its facts rebuilt from scratch), then the
    # second, whose zone exits close the first day's visits and whose fixes end its stops. The
    # marts then hold what one build over both days holds.
    db = tmp_path / warehouse.path.name
    shutil.copyfile(warehouse.path, db)
    env = {**os.environ, "FLEET_DEFAULT_TIME_ZONE": CONFIGURED_ZONE}
    for n, day in enumerate(warehouse.days):
        run_dbt(tmp_path, db, env, "run", *(["--full-refresh"] if n == 0 else []), "--select", UPSTREAM, *KPI_MARTS,
             "--vars", f"{{min_date: '{day}', max_date: '{day}'}}")
    def rounded(rows: list[tuple]) -> list[tuple]:   # sums of floats in another order differ in the last bits
        return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]

    for mart in KPI_MARTS:
        # A stop's place is the mean of the fixes it was derived from (fct_stops keeps that of its
        # first day when a later day extends it): not what this compares.
        sql = f"select * {'exclude (lat, lng)' if mart == 'long_stops' else ''} from marts.{mart} order by all"
        day_by_day, full = rounded(_rows_of(db, sql)), rounded(query(warehouse, sql))
        assert full and day_by_day == full, (mart, len(day_by_day), len(full))


def _rows_of(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()
