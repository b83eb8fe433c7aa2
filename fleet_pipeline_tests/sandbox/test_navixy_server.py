"""Protocol conformance of the Navixy sandbox over real HTTP on loopback.

Expected values come from the World and from zoneinfo directly, never from the server's own
helpers, so a wrong time-zone rule, window bound or limit on the server makes these tests fail.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import requests

from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.server import ManualClock

PARIS = ZoneInfo("Europe/Paris")
LOCAL = "%Y-%m-%d %H:%M:%S"


# -- a minimal raw caller (not a client) -----------------------------------------------------
class Nvx:
    """Sends one Navixy call however a test asks; the API key in the header by default."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def call(self, method: str, *, auth: str | None = navixy.API_KEY, via: str = "header",
             verb: str = "POST", body: str = "json", headers: dict[str, str] | None = None,
             **params: Any) -> requests.Response:
        url = f"{self.base_url}/{method}"
        headers = dict(headers or {})
        if auth is not None:
            if via == "header":
                headers["Authorization"] = f"NVX {auth}"
            else:
                params["hash"] = auth
        if verb == "GET" or via == "query":
            query = {k: _text(v) for k, v in params.items()}
            if verb == "GET":
                return self.http.get(url, params=query, headers=headers, timeout=30)
            return self.http.post(url, params=query, headers=headers, timeout=30)
        if body == "form":
            return self.http.post(url, data={k: _text(v) for k, v in params.items()},
                                  headers=headers, timeout=30)
        return self.http.post(url, json=params, headers=headers, timeout=30)

    def ok(self, method: str, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, **kwargs)
        payload = response.json()
        assert response.status_code == 200 and payload["success"] is True, payload
        return payload

    def fail(self, method: str, code: int, http_status: int, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, **kwargs)
        assert response.headers["Content-Type"].startswith("application/json")
        payload = response.json()
        assert payload["success"] is False and payload["status"]["code"] == code, payload
        assert response.status_code == http_status, (response.status_code, payload)
        return payload


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


@pytest.fixture
def nvx(navixy_sandbox) -> Nvx:
    return Nvx(navixy_sandbox.base_url)


# -- ground truth helpers --------------------------------------------------------------------
def local(moment: datetime) -> str:
    return moment.replace(tzinfo=timezone.utc).astimezone(PARIS).strftime(LOCAL)


def iso(moment: datetime) -> str:
    return moment.replace(tzinfo=timezone.utc).astimezone(PARIS).isoformat(timespec="seconds")


def live_devices(sandbox) -> list:
    """Navixy devices a data call may ask about (activated, not blocked, not deleted)."""
    knobs = sandbox.knobs
    return [d for d in sandbox.world.devices_on("navixy")
            if navixy.tracker_id(d) not in knobs.blocked_tracker_ids
            and navixy.tracker_id(d) not in knobs.deleted_tracker_ids
            and d.activation_date <= sandbox.now().date()]


def world_points(world, device, after: datetime, until: datetime, now: datetime) -> pl.DataFrame:
    """The fixes with after < gps_time <= until already received at `now`."""
    days = [after.date() + timedelta(days=n) for n in range((until.date() - after.date()).days + 1)]
    frame = pl.concat([world.day(device.imei, day).points for day in days], how="vertical_relaxed")
    return frame.filter((pl.col("gps_time") > after) & (pl.col("gps_time") <= until)
                        & (pl.col("received_at") <= now)).sort("gps_time")


def in_any_trip(world, device, frame: pl.DataFrame) -> pl.Series:
    trips = [t for day in frame["gps_time"].dt.date().unique().to_list()
             for t in world.day(device.imei, day).trips]
    return pl.Series([any(t.start <= g <= t.end for t in trips)
                      for g in frame["gps_time"].to_list()])


def driving_device_day(sandbox, day: date, min_trips: int = 3):
    for d in live_devices(sandbox):
        if len(sandbox.world.day(d.imei, day).trips) >= min_trips:
            return d
    raise AssertionError(f"no navixy device drives {min_trips}+ trips on {day}")


# -- transport, formats, envelope ------------------------------------------------------------
def test_json_form_and_get_requests_all_work(nvx):
    by_json = nvx.ok("tracker/list")
    by_form = nvx.ok("tracker/list", body="form", via="body")
    by_get = nvx.ok("tracker/list", verb="GET", via="query")
    assert by_json == by_form == by_get
    assert nvx.ok("tracker/list/")["list"] == by_json["list"]        # trailing slash
    ids = [row["id"] for row in by_json["list"] if not row["source"]["blocked"]][:3]
    as_json_array = nvx.ok("tracker/get_states", verb="GET", via="query", trackers=ids)
    as_csv_form = nvx.ok("tracker/get_states", body="form", via="body",
                         trackers=",".join(map(str, ids)))
    assert set(as_json_array["states"]) == set(as_csv_form["states"]) == {str(i) for i in ids}


def test_errors_are_json_with_documented_http_status(nvx, navixy_sandbox):
    nvx.fail("tracker/nonexistent_action", 111, 400)
    response = nvx.http.post(f"{nvx.base_url}/tracker/list", data=b"{not json",
                             headers={"Content-Type": "application/json",
                                      "Authorization": f"NVX {navixy.API_KEY}"}, timeout=10)
    assert response.status_code == 400 and response.json()["status"]["code"] == 5
    response = nvx.http.put(f"{nvx.base_url}/tracker/list", timeout=10)
    assert response.status_code == 400 and response.json()["status"]["code"] == 112
    outside = nvx.http.get(navixy_sandbox.server.base_url + "/tracker/list", timeout=10)
    assert outside.status_code == 404 and "html" in outside.headers["Content-Type"]
    payload = nvx.fail("track/read", 7, 400, tracker_id=100_003)
    assert payload["errors"][0]["parameter"] in ("from", "to")
    assert payload["status"]["description"] == "Invalid parameters"


def test_null_fields_are_omitted_and_unknown_fields_appear(nvx, navixy_sandbox):
    listed = nvx.ok("tracker/list")["list"]
    assert listed and all("status_listing_id" not in t["source"] for t in listed)
    assert all(isinstance(t["source"]["device_id"], str) and len(t["source"]["device_id"]) == 15
               for t in listed)
    devices = {navixy.tracker_id(d): d for d in live_devices(navixy_sandbox)}
    aovx = next(i for i, d in devices.items() if d.manufacturer == "aovx")
    telto = next(i for i, d in devices.items() if d.manufacturer == "teltonika")
    states = nvx.ok("tracker/get_states", trackers=[aovx, telto])["states"]
    assert "roaming" not in states[str(aovx)]["gsm"]
    assert states[str(telto)]["gsm"]["roaming"] is False
    fuel = nvx.ok("tracker/get_fuel", tracker_id=telto)["inputs"]
    assert fuel and all("converted_value" not in s and "converted_units_type" not in s
                        for s in fuel)
    read = nvx.ok("track/read", tracker_id=telto, **{"from": "2026-11-18 00:00:00",
                                                     "to": "2026-11-19 00:00:00"})["list"]
    assert read and all("hdop" in p for p in read)                 # not in the docs
    assert all("precision" not in p for p in nvx.ok(
        "track/read", tracker_id=aovx, **{"from": "2026-11-18 00:00:00",
                                          "to": "2026-11-19 00:00:00"})["list"])


# -- authentication ----------------------------------------------------------------------------
def test_login_gives_a_session_hash_usable_in_header_body_and_query(nvx):
    reply = nvx.ok("user/auth", auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)
    assert reply["type"] == "authenticated"
    session = reply["hash"]
    assert len(session) == 32 and all(c in "0123456789abcdef" for c in session)
    for via in ("header", "body", "query"):
        assert nvx.ok("tracker/list", auth=session, via=via)["list"]
        assert nvx.ok("tracker/list", auth=navixy.API_KEY, via=via)["list"]
    nvx.fail("user/auth", 102, 400, auth=None, login=navixy.LOGIN, password="wrong")
    nvx.fail("user/auth", 7, 400, auth=None, login=navixy.LOGIN)


def test_missing_or_unknown_hash_is_3(nvx):
    nvx.fail("tracker/list", 3, 400, auth=None)
    nvx.fail("tracker/list", 3, 400, auth="0" * 32)
    nvx.fail("tracker/list", 3, 400, auth="not-a-hash", via="body")
    response = nvx.http.post(f"{nvx.base_url}/tracker/list", json={},
                             headers={"Authorization": f"NVX{navixy.API_KEY}"}, timeout=10)
    assert response.json()["status"]["code"] == 3          # "NVX" without the space


def test_session_ends_after_its_lifetime_but_the_api_key_never(nvx, navixy_sandbox):
    navixy_sandbox.knobs.session_lifetime_s = 600
    session = nvx.ok("user/auth", auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)["hash"]
    navixy_sandbox.clock.advance(seconds=599)
    assert nvx.ok("user/get_info", auth=session)["user_info"]["login"] == navixy.LOGIN
    navixy_sandbox.clock.advance(seconds=1)
    payload = nvx.fail("user/get_info", 4, 400, auth=session)
    assert payload["status"]["description"] == "User or API key not found or session ended"
    navixy_sandbox.clock.advance(days=365)
    assert nvx.ok("user/get_info", auth=navixy.API_KEY)


def test_logout_ends_a_session_and_is_refused_for_the_api_key(nvx):
    session = nvx.ok("user/auth", auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)["hash"]
    nvx.ok("user/logout", auth=session)
    nvx.fail("tracker/list", 4, 400, auth=session)
    nvx.fail("user/logout", 276, 403, auth=navixy.API_KEY)


def test_ending_the_first_sessions_ends_those_alone(nvx, navixy_sandbox):
    def login() -> str:
        return nvx.ok("user/auth", auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)["hash"]

    first, second = login(), login()
    navixy_sandbox.knobs.set(end_first_sessions=1)
    nvx.fail("tracker/list", 4, 400, auth=first)
    assert nvx.ok("tracker/list", auth=second)["list"]
    assert nvx.ok("tracker/list", auth=login())["list"]
    assert nvx.ok("tracker/list", auth=navixy.API_KEY)["list"]


def test_session_hashes_are_accepted_by_another_sandbox(nvx, world):
    session = nvx.ok("user/auth", auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)["hash"]
    with navixy.make_server(world, now=ManualClock(world.now())) as other:
        elsewhere = Nvx(other.base_url + navixy.API_PREFIX)
        assert elsewhere.ok("tracker/list", auth=session)["list"]


def test_user_info_names_the_iana_time_zone(nvx):
    info = nvx.ok("user/get_info")["user_info"]
    assert info["time_zone"] == "Europe/Paris" == navixy.USER_TIME_ZONE
    assert info["measurement_system"] == "metric"
    assert nvx.ok("user/settings/read")["settings"]["time_zone"] == "Europe/Paris"


# -- rate limit ------------------------------------------------------------------------------
def test_more_than_50_calls_a_second_per_hash_is_429_code_15(world):
    instant = [500.0]
    with navixy.make_server(world, now=ManualClock(world.now()),
                            rate_clock=lambda: instant[0]) as server:
        nvx = Nvx(server.base_url + navixy.API_PREFIX)
        statuses = [nvx.call("user/settings/read").status_code for _ in range(51)]
        assert statuses[:50] == [200] * 50 and statuses[50] == 429
        payload = nvx.fail("user/settings/read", 15, 429)
        assert payload["status"]["description"] == "Too many requests (rate limit exceeded)"
        instant[0] += 0.5
        nvx.fail("user/settings/read", 15, 429)
        instant[0] += 0.6                               # the first 50 left the 1 s window
        assert nvx.ok("user/settings/read")
        assert server.count("user/settings/read", vendor_code=15) == 3


def test_the_per_ip_limit_counts_every_hash_of_that_ip(world):
    instant = [500.0]
    with navixy.make_server(world, now=ManualClock(world.now()),
                            rate_clock=lambda: instant[0]) as server:
        nvx = Nvx(server.base_url + navixy.API_PREFIX)
        session = nvx.ok("user/auth", auth=None, login=navixy.LOGIN,
                         password=navixy.PASSWORD)["hash"]          # 1 call from this IP
        for _ in range(24):
            nvx.ok("user/settings/read", auth=session)
        for _ in range(25):
            nvx.ok("user/settings/read", auth=navixy.API_KEY)
        nvx.fail("user/settings/read", 15, 429, auth=session)   # 25 on this hash, 50 on the IP


def test_force_429_knob(nvx, navixy_sandbox):
    navixy_sandbox.knobs.force_429_next = 2
    nvx.fail("tracker/list", 15, 429)
    nvx.fail("user/auth", 15, 429, auth=None, login=navixy.LOGIN, password=navixy.PASSWORD)
    assert nvx.ok("tracker/list")


# -- trackers and states -------------------------------------------------------------------
def test_tracker_list_has_every_navixy_device_blocked_flagged_deleted_absent(nvx, navixy_sandbox):
    world, knobs = navixy_sandbox.world, navixy_sandbox.knobs
    listed = {t["id"]: t for t in nvx.ok("tracker/list")["list"]}
    expected = {navixy.tracker_id(d): d for d in world.devices_on("navixy") if world.is_activated(d, navixy_sandbox.now())}
    assert set(listed) == set(expected) and len(expected) < len(world.devices_on("navixy")), "a later install is absent"
    assert not set(listed) & knobs.deleted_tracker_ids
    assert 1 <= len(knobs.blocked_tracker_ids) <= 2
    for tid, row in listed.items():
        d = expected[tid]
        assert row["label"] == d.device_name and row["source"]["device_id"] == d.imei
        assert row["source"]["blocked"] is (tid in knobs.blocked_tracker_ids)
        assert row["source"]["creation_date"] == d.activation_date.isoformat()
        assert row["source"]["phone"] == d.sim_msisdn
    groups = {g["id"]: g["title"] for g in nvx.ok("tracker/group/list")["list"]}
    for tid, row in listed.items():
        assert groups[row["group_id"]] == world.account(expected[tid].account_id).name
    some = next(iter(listed.values()))["label"][:6]
    assert all(some.lower() in t["label"].lower()
               for t in nvx.ok("tracker/list", labels=[some])["list"])


def test_get_states_keys_states_by_id_string_from_the_last_fix(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    devices = live_devices(navixy_sandbox)
    reply = nvx.ok("tracker/get_states", trackers=[navixy.tracker_id(d) for d in devices])
    assert reply["user_time"] == local(now)
    assert "blocked" not in reply and "not_exist" not in reply
    assert set(reply["states"]) == {str(navixy.tracker_id(d)) for d in devices}
    for d in devices:
        state, fix = reply["states"][str(navixy.tracker_id(d))], world.last_fix(d.imei, now)
        if fix is None:
            assert state["connection_status"] == "offline" and "updated" not in state["gps"]
            continue
        assert state["gps"]["location"] == {"lat": pytest.approx(fix["lat"], abs=1e-6),
                                            "lng": pytest.approx(fix["lng"], abs=1e-6)}
        assert state["gps"]["updated"] == local(fix["gps_time"])
        assert state["last_update"] == local(fix["received_at"])
        assert state["ignition"] is fix["acc_on"]
        assert state["movement_status"] == ("moving" if fix["speed_kmh"] >= 1 else
                                            "stopped" if fix["acc_on"] else "parked")
        age = now - fix["received_at"]
        assert state["connection_status"] == ("active" if age <= timedelta(minutes=5) else
                                              "idle" if age <= timedelta(hours=1) else "offline")


def test_get_states_takes_at_most_2000_ids(nvx, navixy_sandbox):
    live = [navixy.tracker_id(d) for d in live_devices(navixy_sandbox)]
    filler = [900_000 + n for n in range(2000 - len(live))]
    reply = nvx.ok("tracker/get_states", trackers=live + filler, allow_not_exist=True)
    assert len(reply["states"]) == len(live) and sorted(reply["not_exist"]) == filler
    payload = nvx.fail("tracker/get_states", 7, 400, trackers=live + filler + [999_999],
                       allow_not_exist=True)
    assert payload["errors"][0]["parameter"] == "trackers"


def test_blocked_and_missing_trackers_fail_the_whole_call_unless_asked_to_list(nvx,
                                                                                navixy_sandbox):
    knobs = navixy_sandbox.knobs
    live = navixy.tracker_id(live_devices(navixy_sandbox)[0])
    blocked = min(knobs.blocked_tracker_ids)
    deleted = min(knobs.deleted_tracker_ids)
    missing = 999_001
    nvx.fail("tracker/get_states", 208, 403, trackers=[live, blocked])
    nvx.fail("tracker/get_states", 217, 400, trackers=[live, missing])
    nvx.fail("tracker/get_states", 201, 400, trackers=[live, deleted])
    nvx.fail("tracker/get_states", 217, 400, trackers=[live, blocked, missing])   # 217 first
    nvx.fail("tracker/get_states", 208, 403, trackers=[live, blocked, missing],
             allow_not_exist=True)
    nvx.fail("tracker/get_states", 217, 400, trackers=[live, blocked, missing],
             list_blocked=True)
    reply = nvx.ok("tracker/get_states", trackers=[live, blocked, missing, deleted],
                   list_blocked=True, allow_not_exist=True)
    assert set(reply["states"]) == {str(live)}
    assert reply["blocked"] == [blocked]
    assert sorted(reply["not_exist"]) == sorted([missing, deleted])
    only_blocked = nvx.ok("tracker/get_states", trackers=[live, blocked], list_blocked=True)
    assert only_blocked["blocked"] == [blocked] and "not_exist" not in only_blocked
    for method in ("tracker/get_last_gps_point", "track/list", "tracker/get_diagnostics"):
        nvx.fail(method, 208, 403, tracker_id=blocked, **{"from": "2026-11-19 00:00:00",
                                                           "to": "2026-11-20 00:00:00"})
        nvx.fail(method, 201, 400, tracker_id=deleted, **{"from": "2026-11-19 00:00:00",
                                                           "to": "2026-11-20 00:00:00"})


def test_last_gps_point_and_sensors_follow_the_world(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    can = next(d for d in live_devices(navixy_sandbox) if d.model in ("FMC130", "FMB140")
               and world.last_fix(d.imei, now) is not None)
    tid, fix = navixy.tracker_id(can), world.last_fix(can.imei, now)
    point = nvx.ok("tracker/get_last_gps_point", tracker_id=tid)["value"]
    assert point["get_time"] == local(fix["gps_time"])
    assert point["lat"] == pytest.approx(fix["lat"], abs=1e-6)
    diagnostics = nvx.ok("tracker/get_diagnostics", tracker_id=tid)
    values = {s["name"]: s["value"] for s in diagnostics["inputs"]}
    assert values["can_mileage"] == pytest.approx(fix["odometer_km"], abs=0.1)
    assert diagnostics["update_time"] == local(fix["received_at"])
    assert len(diagnostics["states"]["obd_vin"]) == 17
    readings = {s["name"]: s for s in nvx.ok("tracker/get_readings", tracker_id=tid)["inputs"]}
    assert readings["board_voltage"]["units"] == "V"
    assert (readings["board_voltage"]["value"] > 13.5) is bool(fix["acc_on"])


def test_fuel_level_falls_by_the_kilometres_driven(nvx, navixy_sandbox):
    day = date(2026, 11, 18)
    world = navixy_sandbox.world
    d = next(d for d in live_devices(navixy_sandbox) if d.model in ("FMC130", "FMB140", "FMB920")
             and len(world.day(d.imei, day).trips) >= 2)
    trip = world.day(d.imei, day).trips[1]
    levels, odometers = [], []
    for moment in (trip.start - timedelta(seconds=1), trip.end + timedelta(seconds=30)):
        navixy_sandbox.clock.set(moment)
        levels.append(nvx.ok("tracker/get_fuel", tracker_id=navixy.tracker_id(d))["inputs"][0])
        odometers.append(world.last_fix(d.imei, moment)["odometer_km"])
    driven_km = odometers[1] - odometers[0]
    assert driven_km > 1.0 and levels[0]["units_type"] == "litre"
    drop = levels[0]["value"] - levels[1]["value"]
    refilled = drop < 0
    assert refilled or drop == pytest.approx(driven_km * 0.075, abs=0.15)


# -- date-time rendering and parsing ---------------------------------------------------------
def _night_pair(sandbox) -> tuple[Any, datetime, datetime]:
    """A device with fixes at t and t + 1 h inside 00:00-02:00 UTC on 2026-10-25."""
    for d in live_devices(sandbox):
        times = set(sandbox.world.day(d.imei, date(2026, 10, 25)).points["gps_time"].to_list())
        for t in sorted(times):
            if t.hour == 0 and t + timedelta(hours=1) in times:
                return d, t, t + timedelta(hours=1)
    raise AssertionError("no navixy device has night fixes one hour apart on 2026-10-25")


def test_repeated_autumn_hour_renders_twice_locally_and_distinctly_in_iso(nvx, navixy_sandbox):
    d, first, second = _night_pair(navixy_sandbox)
    tid = navixy.tracker_id(d)
    window = {"tracker_id": tid, "simplify": False, "filter": False}
    plain = nvx.ok("track/read", **window, **{"from": "2026-10-25 01:00:00",
                                              "to": "2026-10-25 04:00:00"})["list"]
    times = [p["get_time"] for p in plain]
    same = first.replace(tzinfo=timezone.utc).astimezone(PARIS).strftime(LOCAL)
    assert same == local(second) and same[11:13] == "02"
    assert times.count(same) == 2
    iso_mode = nvx.ok("track/read", **window, iso_datetime=True,
                      **{"from": "2026-10-25T01:00:00+02:00", "to": "2026-10-25T04:00:00+01:00"})
    iso_times = [p["get_time"] for p in iso_mode["list"]]
    assert iso(first) in iso_times and iso(second) in iso_times
    assert iso(first).endswith("+02:00") and iso(second).endswith("+01:00")
    assert len(iso_times) == len(set(iso_times)) == len(times)
    by_header = nvx.ok("track/read", **window, headers={"NVX-ISO-DateTime": "true"},
                       **{"from": "2026-10-25T01:00:00+02:00", "to": "2026-10-25T04:00:00+01:00"})
    assert by_header["list"] == iso_mode["list"]


def test_ambiguous_local_input_means_the_first_occurrence(nvx, navixy_sandbox):
    d, first, second = _night_pair(navixy_sandbox)
    window = {"tracker_id": navixy.tracker_id(d), "simplify": False, "filter": False,
              "iso_datetime": True}
    plain = nvx.ok("track/read", tracker_id=window["tracker_id"], simplify=False, filter=False,
                   **{"from": "2026-10-25 02:00:00", "to": "2026-10-25 02:59:59"})["list"]
    assert [p["get_time"] for p in plain] and local(first) in [p["get_time"] for p in plain]
    # Read back in ISO mode: only summer-time (+02:00, first occurrence) instants were selected.
    summer = nvx.ok("track/read", **window, **{"from": "2026-10-25T02:00:00+02:00",
                                               "to": "2026-10-25T02:59:59+02:00"})["list"]
    winter = nvx.ok("track/read", **window, **{"from": "2026-10-25T02:00:00+01:00",
                                               "to": "2026-10-25T02:59:59+01:00"})["list"]
    assert iso(second) in [p["get_time"] for p in winter]
    assert all(p["get_time"].endswith("+02:00") for p in summer)
    assert all(p["get_time"].endswith("+01:00") for p in winter)

    def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "get_time"} for r in rows]

    assert without_time(summer) != without_time(winter)    # the two hours are told apart
    assert without_time(plain) == without_time(summer)


def test_spring_gap_never_renders_and_reads_with_the_winter_offset(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    d = live_devices(navixy_sandbox)[0]
    after, until = datetime(2026, 3, 28, 22, 0), datetime(2026, 3, 29, 4, 0)
    expected = world_points(world, d, after, until, now)
    assert expected.height >= 4
    reply = nvx.ok("track/read", tracker_id=navixy.tracker_id(d), simplify=False, filter=False,
                   **{"from": "2026-03-28 23:00:00", "to": "2026-03-29 06:00:00"})["list"]
    assert [p["get_time"] for p in reply] == [local(t) for t in expected["gps_time"].to_list()]
    assert not any(p["get_time"].startswith("2026-03-29 02:") for p in reply)
    # "02:30" does not exist in Paris that night; it is read as 02:30 +01:00 = 01:30 UTC.
    cut = nvx.ok("track/read", tracker_id=navixy.tracker_id(d), simplify=False, filter=False,
                 **{"from": "2026-03-29 02:30:00", "to": "2026-03-29 06:00:00"})["list"]
    assert len(cut) == expected.filter(pl.col("gps_time") > datetime(2026, 3, 29, 1, 30)).height


def test_wrong_date_format_for_the_mode_is_7(nvx):
    nvx.fail("track/read", 7, 400, tracker_id=100_003,
             **{"from": "2026-11-19T00:00:00+01:00", "to": "2026-11-20T00:00:00+01:00"})
    nvx.fail("track/read", 7, 400, tracker_id=100_003, iso_datetime=True,
             **{"from": "2026-11-19 00:00:00", "to": "2026-11-20 00:00:00"})
    nvx.fail("track/read", 7, 400, tracker_id=100_003,
             **{"from": "2026-11-20 00:00:00", "to": "2026-11-19 00:00:00"})


# -- track/read ----------------------------------------------------------------------------
def test_full_resolution_is_exactly_the_worlds_visible_points(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    day = date(2026, 11, 17)
    d = driving_device_day(navixy_sandbox, day)
    after, until = datetime(2026, 11, 16, 23, 0), datetime(2026, 11, 17, 23, 0)
    expected = world_points(world, d, after, until, now)
    span = {"from": local(after), "to": local(until), "tracker_id": navixy.tracker_id(d)}
    everything = nvx.ok("track/read", simplify=False, filter=False, **span)
    assert everything["limit_exceeded"] is False
    rows = everything["list"]
    assert [r["get_time"] for r in rows] == [local(t) for t in expected["gps_time"].to_list()]
    assert [r["lat"] for r in rows] == pytest.approx(expected["lat"].to_list(), abs=1e-6)
    assert [r["speed"] for r in rows] == [round(s) for s in expected["speed_kmh"].to_list()]
    assert sum(r["mileage"] for r in rows) == pytest.approx(
        expected["odometer_km"][-1] - expected["odometer_km"][0], abs=0.01)
    parking = in_any_trip(world, d, expected).not_()
    assert [r.get("parking", False) for r in rows] == parking.to_list()
    trip_only = nvx.ok("track/read", simplify=False, **span)["list"]      # filter defaults on
    assert [r["get_time"] for r in trip_only] == [
        local(t) for t in expected.filter(parking.not_())["gps_time"].to_list()]


def test_simplify_is_on_by_default_and_drops_points(nvx, navixy_sandbox):
    day = date(2026, 11, 17)
    d = driving_device_day(navixy_sandbox, day)
    span = {"from": "2026-11-17 00:00:00", "to": "2026-11-18 00:00:00",
            "tracker_id": navixy.tracker_id(d)}
    full = nvx.ok("track/read", simplify=False, **span)["list"]
    default = nvx.ok("track/read", **span)["list"]
    assert 2 <= len(default) < len(full) / 2
    full_times = [p["get_time"] for p in full]
    assert [p["get_time"] for p in default] == sorted(p["get_time"] for p in default)
    assert set(p["get_time"] for p in default) <= set(full_times)
    assert default[0]["get_time"] == full_times[0] and default[-1]["get_time"] == full_times[-1]
    assert sum(p["mileage"] for p in default) == pytest.approx(
        sum(p["mileage"] for p in full), abs=0.01)
    limited = nvx.ok("track/read", point_limit=5, **span)["list"]
    assert len(limited) <= 5
    nvx.fail("track/read", 7, 400, point_limit=1, **span)


def test_from_is_exclusive_and_to_inclusive(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    d = driving_device_day(navixy_sandbox, date(2026, 11, 17))
    t = world_points(world, d, datetime(2026, 11, 17, 8), datetime(2026, 11, 17, 18),
                     now)["gps_time"][10]
    common = {"tracker_id": navixy.tracker_id(d), "simplify": False, "filter": False}
    at = nvx.ok("track/read", **common, **{"from": local(t), "to": local(t + timedelta(minutes=5))})
    assert local(t) not in [p["get_time"] for p in at["list"]]
    before = nvx.ok("track/read", **common, **{"from": local(t - timedelta(seconds=1)),
                                              "to": local(t)})
    assert before["list"][-1]["get_time"] == local(t)


def test_late_points_appear_only_once_received(nvx, navixy_sandbox):
    world = navixy_sandbox.world
    candidates = (world.day(d.imei, date(2026, 11, n)).points.filter(
                      pl.col("late") & (pl.col("received_at") - pl.col("gps_time")
                                        > timedelta(minutes=30))).with_columns(index=d.index)
                  for n in range(10, 19) for d in live_devices(navixy_sandbox))
    late = next((c for c in candidates if c.height), None)
    assert late is not None, "no late upload among navixy devices in 10-18 Nov 2026"
    point = late.row(0, named=True)
    d = world.devices[point["index"]]
    span = {"tracker_id": navixy.tracker_id(d), "simplify": False, "filter": False,
            "from": local(point["gps_time"] - timedelta(seconds=1)), "to": local(point["gps_time"])}
    navixy_sandbox.clock.set(point["received_at"] - timedelta(seconds=1))
    assert nvx.ok("track/read", **span)["list"] == []
    navixy_sandbox.clock.set(point["received_at"])
    rows = nvx.ok("track/read", **span)["list"]
    assert [r["get_time"] for r in rows] == [local(point["gps_time"])]
    assert rows[0].get("buffered", True) is True


def test_storage_period_drops_old_points_and_says_so(nvx, navixy_sandbox):
    world, now = navixy_sandbox.world, navixy_sandbox.now()
    floor = now - timedelta(days=400)
    d = next(d for d in live_devices(navixy_sandbox) if d.activation_date < floor.date()
             and world_points(world, d, floor - timedelta(days=5), floor + timedelta(days=5),
                              now).height)
    span = {"tracker_id": navixy.tracker_id(d), "simplify": False, "filter": False,
            "from": local(floor - timedelta(days=5)), "to": local(floor + timedelta(days=5))}
    reply = nvx.ok("track/read", **span)
    expected = world_points(world, d, floor, floor + timedelta(days=5), now)
    assert reply["limit_exceeded"] is True
    assert [p["get_time"] for p in reply["list"]] == [
        local(t) for t in expected["gps_time"].to_list()]
    inside = nvx.ok("track/read", **dict(span, **{"from": local(floor + timedelta(hours=1))}))
    assert inside["limit_exceeded"] is False
    nvx.fail("track/read", 211, 400, tracker_id=navixy.tracker_id(d),
             **{"from": "2026-10-01 00:00:00", "to": "2026-11-01 00:00:01"})


# -- track/list ----------------------------------------------------------------------------
def test_track_list_reports_the_worlds_trips(nvx, navixy_sandbox):
    world = navixy_sandbox.world
    day = date(2026, 11, 17)
    d = driving_device_day(navixy_sandbox, day)
    span = {"tracker_id": navixy.tracker_id(d), "from": local(datetime(2026, 11, 16, 23)),
            "to": local(datetime(2026, 11, 17, 23))}
    trips = world.day(d.imei, day).trips
    reply = nvx.ok("track/list", count_events=True, **span)
    assert reply["limit_exceeded"] is False
    tracks = reply["list"]
    assert [(t["start_date"], t["end_date"]) for t in tracks] == [
        (local(t.start), local(t.end)) for t in trips]
    assert [t["length"] for t in tracks] == pytest.approx([t.distance_km for t in trips], abs=0.006)
    assert all(t["type"] == "regular" and t["points"] > 1 and t["event_count"] >= 2
               and t["bounds"]["nw"]["lat"] >= t["bounds"]["se"]["lat"] for t in tracks)
    assert len({t["id"] for t in tracks}) == len(tracks)
    no_count = nvx.ok("track/list", **span)["list"]
    assert all("event_count" not in t for t in no_count)
    merged = nvx.ok("track/list", split=False, **span)["list"]
    assert len(merged) == 1 and merged[0]["type"] == "merged" and "id" not in merged[0]
    assert merged[0]["length"] == pytest.approx(sum(t.distance_km for t in trips), abs=0.01)
    points = nvx.ok("track/read", track_id=tracks[1]["id"], simplify=False, **span)["list"]
    assert points[0]["get_time"] == tracks[1]["start_date"]
    assert points[-1]["get_time"] == tracks[1]["end_date"]


# -- history ---------------------------------------------------------------------------------
def _history(nvx, trackers, start, end, **extra) -> dict[str, Any]:
    return nvx.ok("history/tracker/list", trackers=trackers, **{"from": start, "to": end}, **extra)


def test_history_maps_world_alarms_and_ignition(nvx, navixy_sandbox):
    world = navixy_sandbox.world
    day = date(2026, 11, 17)
    d = driving_device_day(navixy_sandbox, day)
    dd = world.day(d.imei, day)
    reply = _history(nvx, [navixy.tracker_id(d)], local(datetime(2026, 11, 17)),
                     local(datetime(2026, 11, 17, 23, 59, 59)))
    events = reply["list"]
    assert reply["total"] == len(events) and reply["limit_exceeded"] is False
    names = {"overspeed": "speedup", "geofence_in": "inzone", "geofence_out": "outzone",
             "sos": "sos", "power_cut": "battery_off", "low_battery": "lowpower",
             "vibration": "vibration_start"}
    got = Counter((e["event"], e["time"]) for e in events)
    for alarm in dd.alarms:
        assert got[(names[alarm.kind], local(alarm.time))] >= 1
    assert sum(1 for e in events if e["event"] == "track_start") == len(dd.trips)
    assert sum(1 for e in events if e["event"] == "track_end") == len(dd.trips)
    assert any(e["event"] == "input_change" for e in events)
    times = [e["time"] for e in events]
    assert times == sorted(times)
    assert all(e["tracker_id"] == navixy.tracker_id(d) and e["message"].startswith(d.device_name)
               for e in events)
    unlabelled = _history(nvx, [navixy.tracker_id(d)], local(datetime(2026, 11, 17)),
                          local(datetime(2026, 11, 17, 23, 59, 59)), add_tracker_label=False)
    assert not any(e["message"].startswith(d.device_name) for e in unlabelled["list"])
    only = _history(nvx, [navixy.tracker_id(d)], local(datetime(2026, 11, 17)),
                    local(datetime(2026, 11, 17, 23, 59, 59)), events=["track_end"])
    assert {e["event"] for e in only["list"]} == {"track_end"}


def test_history_pages_by_moving_from_with_at_most_1000_rows(nvx, navixy_sandbox):
    trackers = [navixy.tracker_id(d) for d in live_devices(navixy_sandbox)]
    start, end = "2026-11-13 00:00:00", "2026-11-17 00:00:00"
    first = _history(nvx, trackers, start, end)
    assert len(first["list"]) == 1000 and first["limit_exceeded"] is True
    total = first["total"]
    assert total > 1000
    seen: dict[int, dict[str, Any]] = {}
    page, cursor = first, start
    while True:
        for e in page["list"]:
            seen.setdefault(e["id"], e)
        if not page["limit_exceeded"]:
            break
        cursor = page["list"][-1]["time"]      # inclusive: re-reads that second, ids dedupe
        page = _history(nvx, trackers, cursor, end)
    assert len(seen) == total
    per_second = Counter((e["tracker_id"], e["time"]) for e in seen.values())
    assert max(per_second.values()) >= 2                      # ties inside one second exist
    newest_first = _history(nvx, trackers, start, end, ascending=False, limit=5)["list"]
    assert [e["time"] for e in newest_first] == sorted((e["time"] for e in newest_first),
                                                       reverse=True)
    nvx.fail("history/tracker/list", 212, 400, trackers=trackers, limit=1001,
             **{"from": start, "to": end})
    nvx.fail("history/tracker/list", 7, 400, trackers=trackers, limit=0,
             **{"from": start, "to": end})


def test_history_from_is_inclusive_so_a_page_cut_inside_a_second_loses_nothing(nvx,
                                                                                navixy_sandbox):
    d = driving_device_day(navixy_sandbox, date(2026, 11, 17))
    start, end = "2026-11-17 00:00:00", "2026-11-18 00:00:00"
    everything = _history(nvx, [navixy.tracker_id(d)], start, end)["list"]
    cut = next(n for n in range(1, len(everything))
               if everything[n]["time"] == everything[n - 1]["time"])
    page = _history(nvx, [navixy.tracker_id(d)], start, end, limit=cut)
    assert page["limit_exceeded"] is True and page["list"][-1]["time"] == everything[cut]["time"]
    rest = _history(nvx, [navixy.tracker_id(d)], page["list"][-1]["time"], end)["list"]
    assert everything[cut]["id"] in {e["id"] for e in rest}
    assert ({e["id"] for e in page["list"]} | {e["id"] for e in rest}
            == {e["id"] for e in everything})


def test_history_limits_window_and_entities(nvx, navixy_sandbox):
    knobs = navixy_sandbox.knobs
    live = navixy.tracker_id(live_devices(navixy_sandbox)[0])
    nvx.fail("history/tracker/list", 211, 400, trackers=[live],
             **{"from": "2026-08-01 00:00:00", "to": "2026-11-01 00:00:00"})
    assert _history(nvx, [live], "2026-08-03 00:00:00", "2026-11-01 00:00:00")
    for bad in (min(knobs.blocked_tracker_ids), min(knobs.deleted_tracker_ids), 999_123):
        nvx.fail("history/tracker/list", 217, 400, trackers=[live, bad],
                 **{"from": "2026-11-01 00:00:00", "to": "2026-11-02 00:00:00"})


# -- mileage stats -----------------------------------------------------------------------------
def test_mileage_is_keyed_by_local_day_and_matches_the_trips(nvx, navixy_sandbox):
    world = navixy_sandbox.world
    devices = live_devices(navixy_sandbox)[:3]
    reply = nvx.ok("tracker/stats/mileage/read", trackers=[navixy.tracker_id(d) for d in devices],
                   **{"from": "2026-10-24 00:00:00", "to": "2026-10-26 23:59:59"})
    assert reply["limit_exceeded"] is False
    for d in devices:
        days = reply["result"][str(navixy.tracker_id(d))]
        assert list(days) == ["2026-10-24", "2026-10-25", "2026-10-26"]
        for key, value in days.items():
            day = date.fromisoformat(key)
            lo = datetime.combine(day, datetime.min.time(), PARIS).astimezone(timezone.utc)
            hi = datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                  PARIS).astimezone(timezone.utc)
            lo, hi = lo.replace(tzinfo=None), hi.replace(tzinfo=None)
            trips = [t for u in (day - timedelta(days=1), day)
                     for t in world.day(d.imei, u).trips if lo <= t.start and t.end <= hi]
            assert value["mileage"] == pytest.approx(sum(t.distance_km for t in trips), abs=0.011)
    # The 25-hour local day 2026-10-25 starts at 22:00 UTC the day before.
    one_day = nvx.ok("tracker/stats/mileage/read", trackers=[navixy.tracker_id(devices[0])],
                     **{"from": "2026-10-25 00:00:00", "to": "2026-10-25 23:59:59"})
    assert list(one_day["result"][str(navixy.tracker_id(devices[0]))]) == ["2026-10-25"]


def test_mileage_limits_128_trackers_and_31_days(nvx, navixy_sandbox):
    knobs = navixy_sandbox.knobs
    live = [navixy.tracker_id(d) for d in live_devices(navixy_sandbox)][:2]
    october = nvx.ok("tracker/stats/mileage/read", trackers=live,
                     **{"from": "2026-10-01 00:00:00", "to": "2026-11-01 00:00:00"})
    assert len(october["result"][str(live[0])]) == 32     # 31 local days + 1 Nov 00:00
    nvx.fail("tracker/stats/mileage/read", 211, 400, trackers=live,
             **{"from": "2026-10-01 00:00:00", "to": "2026-11-01 00:00:01"})
    too_many = live + [800_000 + n for n in range(127)]
    nvx.fail("tracker/stats/mileage/read", 221, 403, trackers=too_many,
             **{"from": "2026-10-01 00:00:00", "to": "2026-10-02 00:00:00"})
    nvx.fail("tracker/stats/mileage/read", 217, 400,
             trackers=live + [min(knobs.blocked_tracker_ids)],
             **{"from": "2026-10-01 00:00:00", "to": "2026-10-02 00:00:00"})


# -- faults ----------------------------------------------------------------------------------
def test_fault_knobs_503_malformed_and_truncated(nvx, navixy_sandbox):
    navixy_sandbox.knobs.set(fail_next_5xx=2, malformed_json_next=1, truncated_body_next=1)
    assert [nvx.call("tracker/list").status_code for _ in range(2)] == [503, 503]
    malformed = nvx.call("tracker/list")
    with pytest.raises(ValueError):
        malformed.json()
    truncated = nvx.call("tracker/list")
    with pytest.raises(ValueError):
        json.loads(truncated.content)
    assert nvx.ok("tracker/list")
    faults = [r.fault for r in navixy_sandbox.server.requests()
              if r.vendor_method == "tracker/list"]
    assert faults == ["5xx", "5xx", "malformed_json", "truncated", None]


def test_corrupt_rows_knob_damages_imeis_and_latitudes(nvx, navixy_sandbox):
    navixy_sandbox.knobs.corrupt_rows_next = 2
    listed = nvx.ok("tracker/list")["list"]
    world_imeis = {d.imei for d in navixy_sandbox.world.devices_on("navixy")}
    assert sum(t["source"]["device_id"] not in world_imeis for t in listed) == 2
    d = live_devices(navixy_sandbox)[0]
    navixy_sandbox.knobs.corrupt_rows_next = 1
    rows = nvx.ok("track/read", tracker_id=navixy.tracker_id(d), simplify=False, filter=False,
                  **{"from": "2026-11-18 00:00:00", "to": "2026-11-19 00:00:00"})["list"]
    assert [r["lat"] for r in rows].count(123.456) == 1


def test_request_log_names_the_method_and_never_the_hash(nvx, navixy_sandbox):
    nvx.ok("tracker/list", via="query")
    nvx.fail("tracker/list", 3, 400, auth="f" * 32)
    server = navixy_sandbox.server
    assert server.count("tracker/list", status=200) == 1
    assert server.count("tracker/list", vendor_code=3) == 1
    assert navixy.API_KEY not in repr(server.requests())
