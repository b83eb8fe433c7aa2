"""The sandbox world: identifiers, determinism, and the physical consistency of every device-day.

The month of 60 devices x 30 days is generated once per module (about 10 s); each test then
checks one property over all of it, so a rare violation anywhere in the fleet fails the suite.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fleet_pipeline.sandbox.world import (
    ALARM_KINDS,
    CITY_CENTER,
    CITY_RADIUS_KM,
    PARKING_MIN_S,
    POINT_SCHEMA,
    DeviceDay,
    World,
    daygen,
    timeline,
)
from fleet_pipeline.sandbox.world import world as world_module
from fleet_pipeline.sandbox.world.geo import haversine_m
from fleet_pipeline.sandbox.world.identifiers import TAC_BY_MODEL, luhn_valid

NOW = datetime(2026, 11, 20, 12)
DAYS = [date(2026, 10, 21) + timedelta(days=k) for k in range(30)]


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=42, n_devices=60, now=lambda: NOW)


@pytest.fixture(scope="module")
def big_world() -> World:
    return World(seed=42, n_devices=10_000, now=lambda: NOW)


@pytest.fixture(scope="module")
def month(world: World) -> dict[tuple[str, date], DeviceDay]:
    return {(d.imei, day): world.day(d.imei, day) for d in world.devices for day in DAYS}


def driving_days(month: dict[tuple[str, date], DeviceDay]) -> list[DeviceDay]:
    return [dd for dd in month.values() if dd.status == "driving"]


# --------------------------------------------------------------------------- fleet


def test_luhn_check_accepts_real_imeis_and_rejects_a_wrong_check_digit() -> None:
    # the GSMA example IMEI and IMEIs from the vendors' own samples
    for imei in ("490154203237518", "868120246598152", "352625691450983", "869247060081665"):
        assert luhn_valid(imei)
    assert not luhn_valid("490154203237517") and not luhn_valid("49015420323751x")


def test_imeis_are_15_digits_luhn_valid_with_model_tac_and_unique(big_world: World) -> None:
    imeis = [d.imei for d in big_world.devices]
    assert len(set(imeis)) == 10_000
    for d in big_world.devices:
        assert len(d.imei) == 15 and d.imei.isdigit(), d
        assert luhn_valid(d.imei), d.imei
        assert d.imei[:8] == TAC_BY_MODEL[d.model], d


def test_sim_and_vehicle_identifiers_are_well_formed_and_unique(big_world: World) -> None:
    for d in big_world.devices:
        assert len(d.sim_iccid) == 19 and d.sim_iccid.startswith("8933") and luhn_valid(d.sim_iccid), d
        assert d.sim_msisdn[:4] in ("+336", "+337") and len(d.sim_msisdn) == 12 and d.sim_msisdn[1:].isdigit(), d
        assert d.vehicle_number[2] == "-" and d.vehicle_number[6] == "-" and d.vehicle_number[3:6].isdigit(), d
    for attribute in ("sim_iccid", "sim_msisdn", "vehicle_number", "device_name"):
        assert len({getattr(d, attribute) for d in big_world.devices}) == 10_000, attribute


def test_building_10000_devices_generates_no_day(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("building the fleet must not plan or generate any day")

    monkeypatch.setattr(world_module, "plan_days", forbidden)
    monkeypatch.setattr(timeline, "build_timeline", forbidden)
    monkeypatch.setattr(daygen, "generate_day", forbidden)
    w = World(seed=7, n_devices=10_000)
    assert len(w.devices) == 10_000
    with pytest.raises(AssertionError, match="must not"):
        w.day(w.devices[0].imei, date(2026, 11, 1))


def test_fleet_mix_accounts_and_platforms(big_world: World) -> None:
    devices = big_world.devices
    shares = Counter(d.manufacturer for d in devices)
    assert abs(shares["jimi"] / 10_000 - 0.45) < 0.02
    assert abs(shares["teltonika"] / 10_000 - 0.35) < 0.02
    assert abs(shares["aovx"] / 10_000 - 0.20) < 0.02
    lapsed = sum((d.expiration_date - d.activation_date).days < 400 for d in devices)
    assert 0.06 < lapsed / len(devices) < 0.10, "about 8% of contracts lapse after one year"
    for d in devices:
        assert d.platform == {"jimi": "tracksolid", "teltonika": "navixy", "aovx": "navixy"}[d.manufacturer]
        assert d.firmware_platform == {"jimi": None, "teltonika": "teltonika_fota", "aovx": "aovx"}[d.manufacturer]
        assert big_world.account(d.account_id).platform == d.platform
        # the install stream runs to the Sunday of the anchor's week (installs after now are hidden)
        assert NOW.date() - timedelta(days=1054) <= d.activation_date <= big_world.anchor + timedelta(days=6)
        if d.index % 10 != 7:   # the installed base; every tenth device is a recent install
            assert date(2024, 1, 1) <= d.activation_date <= date(2026, 6, 30)
        assert (d.expiration_date - d.activation_date).days in (365, 366, 4 * 365, 4 * 365 + 1)
        assert d.fix_interval_s in (10, 15, 20, 30)
        centre_m = haversine_m(d.home_lat, d.home_lng, *CITY_CENTER)
        assert centre_m < CITY_RADIUS_KM * 1000

    on_sub = sum(big_world.account(d.account_id).parent_id is not None for d in devices) / 10_000
    assert 0.28 < on_sub < 0.39
    for platform, root_id in (("tracksolid", "fleetco"), ("navixy", "fleetco-nvx")):
        root = big_world.root_account(platform)
        assert root.account_id == root_id and root.parent_id is None
        subs = big_world.child_accounts(root_id)
        assert 3 <= len(subs) <= 4
        grandchildren = [c for s in subs for c in big_world.child_accounts(s.account_id)]
        assert len(grandchildren) == 1 and big_world.devices_of_account(grandchildren[0].account_id)
        # listing is direct only: the root's list holds no sub-account device
        assert all(d.account_id == root_id for d in big_world.devices_of_account(root_id))
        assert {d.platform for d in big_world.devices_on(platform)} == {platform}
    with pytest.raises(KeyError, match="no device"):
        big_world.device("000000000000000")
    assert big_world.now() == NOW


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_days_whatever_the_fleet_size_or_call_order(world: World, big_world: World) -> None:
    assert big_world.devices[:60] == world.devices
    assert big_world.accounts == world.accounts
    fresh = World(seed=42, n_devices=60, now=lambda: NOW)
    imei = world.devices[5].imei
    later, earlier = date(2026, 11, 12), date(2026, 11, 3)
    # fresh world asks in the opposite order, and the big world asks through odometer first
    fresh_later = fresh.day(imei, later)
    big_world.odometer_km(imei, datetime(2026, 11, 12, 9, 30))
    for a, b, c in (
        (world.day(imei, earlier), fresh.day(imei, earlier), big_world.day(imei, earlier)),
        (world.day(imei, later), fresh_later, big_world.day(imei, later)),
    ):
        assert a.points.equals(b.points) and a.points.equals(c.points)
        assert a.trips == b.trips == c.trips
        assert a.stops == b.stops == c.stops
        assert a.alarms == b.alarms == c.alarms
        assert a.odometer_start_km == b.odometer_start_km == c.odometer_start_km
    other_seed = World(seed=43, n_devices=60)
    assert other_seed.devices[5].imei != imei


# --------------------------------------------------------------------------- device-days


def test_points_sorted_unique_typed_and_received_after_recorded(month) -> None:
    for (imei, day), dd in month.items():
        assert dd.points.schema == pl.Schema(POINT_SCHEMA), (imei, day)
    points = pl.concat(
        [dd.points.with_columns(pl.lit(imei).alias("imei"), pl.lit(day).alias("day")) for (imei, day), dd in month.items()]
    )
    per_day = points.group_by("imei", "day").agg(
        sorted_unique=(pl.col("gps_time").diff().drop_nulls() > timedelta(0)).all(),
        on_its_day=(pl.col("gps_time").dt.date() == pl.col("day")).all(),
        odometer_never_decreases=(pl.col("odometer_km").diff().drop_nulls() >= 0).all(),
    )
    assert per_day["sorted_unique"].all() and per_day["on_its_day"].all() and per_day["odometer_never_decreases"].all()
    assert (points["received_at"] >= points["gps_time"]).all()
    delay_s = points.filter(~pl.col("late")).select((pl.col("received_at") - pl.col("gps_time")).dt.total_seconds())
    assert delay_s.to_series().is_between(1, 5).all()
    lat0, lng0 = CITY_CENTER
    assert (haversine_m(points["lat"].to_numpy(), points["lng"].to_numpy(), lat0, lng0) < CITY_RADIUS_KM * 1000).all()
    assert points["satellites"].is_between(3, 14).all() and points["altitude_m"].is_between(160, 320).all()
    assert points["direction_deg"].is_between(0, 360, closed="left").all()
    moving = points.filter(pl.col("speed_kmh") > 0)
    assert moving["acc_on"].all() and moving["speed_kmh"].max() < 130


def test_late_uploads_exist_both_after_minutes_and_after_days(month) -> None:
    delays = []
    for dd in driving_days(month):
        late = dd.points.filter(pl.col("late"))
        if late.height:
            delays.append((late["received_at"] - late["gps_time"]).dt.total_seconds().max())
    assert any(d < 3 * 3600 for d in delays), "no tunnel-style buffered chunk"
    assert any(d > 86_400 for d in delays), "no chunk re-uploaded days later"
    share = len(delays) / len(driving_days(month))
    assert 0.05 < share < 0.25


def test_trip_points_measure_the_trip_distance(month) -> None:
    for dd in driving_days(month):
        gps = dd.points["gps_time"].to_numpy()
        lat, lng = dd.points["lat"].to_numpy(), dd.points["lng"].to_numpy()
        for trip in dd.trips:
            m = (gps >= np.datetime64(trip.start)) & (gps <= np.datetime64(trip.end))
            measured_km = haversine_m(lat[m][:-1], lng[m][:-1], lat[m][1:], lng[m][1:]).sum() / 1000
            assert measured_km == pytest.approx(trip.distance_km, rel=0.01), (dd.imei, dd.day, trip)


def test_fix_spacing_while_driving_is_at_most_the_upload_interval(world: World, month) -> None:
    for dd in driving_days(month):
        interval = world.device(dd.imei).fix_interval_s
        gps = dd.points["gps_time"].to_numpy()
        for trip in dd.trips:
            in_trip = gps[(gps >= np.datetime64(trip.start)) & (gps <= np.datetime64(trip.end))]
            assert in_trip[0] == np.datetime64(trip.start) and in_trip[-1] == np.datetime64(trip.end)
            assert np.diff(in_trip).max() <= np.timedelta64(interval, "s"), (dd.imei, trip)


def test_true_km_is_the_sum_of_trips_and_the_odometer_difference(month) -> None:
    for dd in month.values():
        assert dd.true_km == pytest.approx(sum(t.distance_km for t in dd.trips), abs=1e-9)
        assert dd.odometer_end_km - dd.odometer_start_km == pytest.approx(dd.true_km, abs=1e-6)
        if dd.points.height:
            assert dd.points["odometer_km"][0] >= dd.odometer_start_km - 1e-9
            assert dd.points["odometer_km"][-1] <= dd.odometer_end_km + 1e-9
        # the drawn path is exactly as long as the planned one: odometer at arrival - at departure
        odometer = dict(zip(dd.points["gps_time"].to_list(), dd.points["odometer_km"].to_list()))
        for trip in dd.trips:
            assert odometer[trip.end] - odometer[trip.start] == pytest.approx(trip.distance_km, abs=1e-6)
    kms = [dd.true_km for dd in driving_days(month)]
    assert 10 < float(np.median(kms)) < 120


def test_odometer_is_continuous_across_midnight_and_matches_fixes(world: World, month) -> None:
    for d in world.devices:
        for day, next_day in zip(DAYS, DAYS[1:]):
            a, b = month[(d.imei, day)], month[(d.imei, next_day)]
            midnight = datetime.combine(next_day, datetime.min.time())
            assert a.odometer_end_km == b.odometer_start_km == world.odometer_km(d.imei, midnight)
    dd = driving_days(month)[0]
    for row in dd.points.sample(20, seed=1).iter_rows(named=True):
        assert world.odometer_km(dd.imei, row["gps_time"]) == pytest.approx(row["odometer_km"], abs=1e-9)
    device = world.device(dd.imei)
    before = datetime.combine(device.activation_date - timedelta(days=3), datetime.min.time())
    at_activation = datetime.combine(device.activation_date, datetime.min.time())
    assert world.odometer_km(dd.imei, before) == world.odometer_km(dd.imei, at_activation)
    assert 5_000 <= world.odometer_km(dd.imei, at_activation) <= 150_000


def test_trips_and_parkings_tile_the_working_day_and_short_stops_lie_inside_trips(month) -> None:
    for dd in driving_days(month):
        parkings = [s for s in dd.stops if s.kind == "parking"]
        shorts = [s for s in dd.stops if s.kind == "short"]
        assert len(parkings) == len(dd.trips) and dd.stops == sorted(dd.stops, key=lambda s: s.start)
        for k, trip in enumerate(dd.trips):
            assert trip.start < trip.end and trip.end.date() == dd.day
            assert parkings[k].start == trip.end
            if k + 1 < len(dd.trips):
                assert parkings[k].end == dd.trips[k + 1].start
                assert (parkings[k].end - parkings[k].start).total_seconds() >= PARKING_MIN_S
            inside = [s for s in shorts if trip.start <= s.start and s.end <= trip.end]
            assert trip.idle_s == sum((s.end - s.start).total_seconds() for s in inside)
            assert trip.avg_speed_kmh == pytest.approx(trip.distance_km / ((trip.end - trip.start).total_seconds() / 3600))
            assert trip.max_speed_kmh >= trip.avg_speed_kmh - 1e-9
        for s in shorts:
            assert s.ignition_on and 0 < (s.end - s.start).total_seconds() < PARKING_MIN_S
            assert sum(t.start <= s.start and s.end <= t.end for t in dd.trips) == 1
        for s in parkings:   # no parking overlaps a trip
            assert not any(t.start < s.end and s.start < t.end for t in dd.trips)
        assert not parkings[-1].ignition_on
        first = dd.points.filter(pl.col("gps_time") == dd.trips[0].start)
        assert first.height == 1 and first["acc_on"][0]


def test_evening_parking_ends_at_the_next_departure(world: World, month) -> None:
    checked = 0
    for (imei, day), dd in month.items():
        if dd.status != "driving":
            continue
        evening = dd.stops[-1]
        home = world.device(imei)
        assert haversine_m(evening.lat, evening.lng, home.home_lat, home.home_lng) < 1.0
        for k in range(1, 31):
            following = world.day(imei, day + timedelta(days=k))
            if following.status == "driving":
                assert evening.end == following.trips[0].start, (imei, day)
                checked += 1
                break
            assert not following.stops   # the vehicle is still in that same parking
    assert checked > 1000


def test_days_before_activation_offline_and_parked_days(world: World, month) -> None:
    device = max(world.devices, key=lambda d: d.activation_date)
    before = world.day(device.imei, device.activation_date - timedelta(days=1))
    assert before.status == "inactive" and before.points.height == 0 and not before.trips and not before.alarms
    statuses = Counter(dd.status for dd in month.values())
    assert statuses["offline"] > 0 and statuses["parked"] > 0 and statuses["driving"] > 0.7 * len(month)
    for dd in month.values():
        if dd.status == "offline":
            assert dd.points.height == 0 and not dd.trips and not dd.stops and not dd.alarms
        if dd.status == "parked":
            assert not dd.trips and not dd.stops and dd.true_km == 0
            assert dd.points.height > 0 and not dd.points["acc_on"].any() and (dd.points["speed_kmh"] == 0).all()
            assert dd.points["lat"].n_unique() == 1


def test_every_alarm_kind_occurs_with_consistent_fields(world: World, month) -> None:
    kinds = Counter()
    for dd in month.values():
        device = world.device(dd.imei)
        assert dd.alarms == sorted(dd.alarms, key=lambda a: a.time)
        for alarm in dd.alarms:
            kinds[alarm.kind] += 1
            assert alarm.kind in ALARM_KINDS and alarm.time.date() == dd.day
            if alarm.kind.startswith("geofence"):
                assert alarm.geofence_id == f"depot-{device.account_id}"
            else:
                assert alarm.geofence_id is None
            if alarm.kind == "overspeed":
                assert alarm.speed_kmh > device.speed_limit_kmh
            if alarm.kind in ("vibration", "low_battery"):
                assert alarm.speed_kmh == 0
            # a stationary vehicle's alarm is where its fixes are (GPS error aside)
            if alarm.speed_kmh == 0 and dd.points.height:
                gps = dd.points["gps_time"].to_numpy()
                j = min(int(np.searchsorted(gps, np.datetime64(alarm.time))), len(gps) - 1)
                if abs(gps[j] - np.datetime64(alarm.time)) <= np.timedelta64(60, "s"):
                    gap = haversine_m(dd.points["lat"][j], dd.points["lng"][j], alarm.lat, alarm.lng)
                    assert gap < 10, (dd.imei, alarm)
    assert set(kinds) == set(ALARM_KINDS), kinds
    assert kinds["geofence_out"] == kinds["geofence_in"] == len(driving_days(month))


def test_last_fix_is_the_latest_fix_received_by_then(world: World, month) -> None:
    # a day with a chunk re-uploaded days later: during the gap the platform knows only older fixes
    dd = next(
        dd for dd in driving_days(month)
        if dd.points.filter(pl.col("received_at") > pl.col("gps_time") + timedelta(days=1)).height
    )
    chunk = dd.points.filter(pl.col("received_at") > pl.col("gps_time") + timedelta(days=1))
    inside_gap = chunk["gps_time"][chunk.height // 2]
    fix = world.last_fix(dd.imei, inside_gap)
    assert fix is not None and set(fix) == set(POINT_SCHEMA)
    assert fix["gps_time"] < chunk["gps_time"][0]

    # against brute force over the frames, at instants around the gap and the re-upload
    history = pl.concat([world.day(dd.imei, dd.day - timedelta(days=k)).points for k in range(8)] +
                        [world.day(dd.imei, dd.day + timedelta(days=k)).points for k in range(1, 4)])
    for at in (inside_gap, chunk["gps_time"][-1], chunk["received_at"][0], chunk["received_at"][0] - timedelta(seconds=1),
               datetime.combine(dd.day, datetime.min.time()) + timedelta(hours=3)):
        seen = history.filter((pl.col("received_at") <= at) & (pl.col("gps_time") >= at - timedelta(days=7)))
        assert world.last_fix(dd.imei, at) == seen.sort("gps_time").row(-1, named=True), at

    device = world.device(dd.imei)
    long_before = datetime.combine(device.activation_date, datetime.min.time()) - timedelta(days=1)
    assert world.last_fix(dd.imei, long_before) is None
