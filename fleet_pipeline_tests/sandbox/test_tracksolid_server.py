"""Protocol conformance of the Tracksolid sandbox over real HTTP on loopback.

The signer below is written from the vendor doc, independently of the server's, so a wrong
signature rule on either side makes these tests fail.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import requests

from fleet_pipeline.sandbox import tracksolid
from fleet_pipeline.sandbox.server import ManualClock

TS = "%Y-%m-%d %H:%M:%S"


def signed(creds: dict[str, str], method: str, at: datetime, **params: Any) -> dict[str, str]:
    """The doc's rule: sorted params, secret + k1v1k2v2... + secret, MD5, uppercase hex."""
    body = {"method": method, "app_key": creds["app_key"], "timestamp": at.strftime(TS),
            "sign_method": "md5", "v": "1.0", "format": "json",
            **{k: str(v) for k, v in params.items()}}
    text = creds["app_secret"] + "".join(k + body[k] for k in sorted(body)) + creds["app_secret"]
    body["sign"] = hashlib.md5(text.encode("utf-8")).hexdigest().upper()
    return body


class Jimi:
    """Minimal raw caller: posts signed forms, remembers one token. Not a client."""

    def __init__(self, url: str, creds: dict[str, str], clock: Any, user_id: str | None = None):
        self.url, self.creds, self.clock = url, creds, clock
        self.user_id = user_id or creds["user_id"]
        self.http = requests.Session()
        self.token: str | None = None
        self.refresh_token: str | None = None

    def post(self, body: dict[str, str]) -> requests.Response:
        return self.http.post(self.url, data=body, timeout=10)

    def raw(self, method: str, **params: Any) -> dict[str, Any]:
        return self.post(signed(self.creds, method, self.clock(), **params)).json()

    def login(self, expires_in: int = 7200) -> dict[str, Any]:
        pwd = hashlib.md5(self.creds["user_password"].encode()).hexdigest()
        reply = self.raw("jimi.oauth.token.get", user_id=self.user_id, user_pwd_md5=pwd,
                         expires_in=expires_in)
        if str(reply["code"]) == "0":
            self.token = reply["result"]["accessToken"]
            self.refresh_token = reply["result"]["refreshToken"]
        return reply

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        if self.token is None:
            assert str(self.login()["code"]) == "0"
        return self.raw(method, access_token=self.token, **params)


@pytest.fixture
def jimi(tracksolid_sandbox) -> Jimi:
    return Jimi(tracksolid_sandbox.route_url, tracksolid_sandbox.credentials,
                tracksolid_sandbox.clock)


def tracksolid_devices(world):
    """The devices the account holds at the World's clock (a later install is not there yet)."""
    return [d for d in world.devices if d.platform == "tracksolid" and world.is_activated(d, world.now())]


def code(reply: dict[str, Any]) -> str:
    return str(reply["code"])


def days(begin: date, end: date) -> list[date]:
    return [begin + timedelta(days=n) for n in range((end - begin).days + 1)]


# -- transport and signing -------------------------------------------------------------------
def test_valid_signature_gets_a_token_and_a_wrong_one_gets_1001(jimi, tracksolid_sandbox):
    body = signed(jimi.creds, "jimi.oauth.token.get", jimi.clock(), user_id="fleetco",
                  user_pwd_md5=hashlib.md5(b"sandbox-password").hexdigest(), expires_in=7200)
    tampered = dict(body, expires_in="3600")
    assert jimi.post(tampered).json()["code"] == 1001
    lower = dict(body, sign=body["sign"].lower())
    assert jimi.post(lower).json()["code"] == 1001
    reply = jimi.post(body).json()
    assert reply["code"] == 0 and reply["message"] == "success"
    result = reply["result"]
    assert set(result) == {"accessToken", "expiresIn", "account", "appKey", "refreshToken", "time"}
    assert result["expiresIn"] == 7200 and result["account"] == "fleetco"
    assert result["time"] == tracksolid_sandbox.now().strftime(TS)


def test_empty_parameter_is_part_of_the_signature(jimi):
    jimi.login()
    included = signed(jimi.creds, "jimi.user.device.list", jimi.clock(), access_token=jimi.token,
                      target="fleetco", map_type="")
    assert jimi.post(included).json()["code"] == 0
    left_out = signed(jimi.creds, "jimi.user.device.list", jimi.clock(), access_token=jimi.token,
                      target="fleetco")
    assert jimi.post(dict(left_out, map_type="")).json()["code"] == 1001


def test_missing_common_parameter_and_unknown_app_key_are_1001(jimi):
    body = signed(jimi.creds, "jimi.oauth.token.get", jimi.clock(), user_id="fleetco",
                  user_pwd_md5="x", expires_in=60)
    del body["v"]
    reply = jimi.post(body).json()
    assert reply["code"] == 1001 and "v" in reply["message"]
    foreign = dict(jimi.creds, app_key="someone-elses-key")
    reply = jimi.post(signed(foreign, "jimi.oauth.token.get", jimi.clock(), user_id="fleetco",
                             user_pwd_md5="x", expires_in=60)).json()
    assert reply == {"code": 1001, "message": "app_key invalid", "result": None}


def test_timestamp_must_be_within_ten_minutes_of_the_sandbox_clock(jimi):
    jimi.login()
    now = jimi.clock()
    stale = jimi.post(signed(jimi.creds, "jimi.user.device.list", now - timedelta(minutes=11),
                             access_token=jimi.token, target="fleetco")).json()
    assert stale["code"] == 1001 and "timestamp" in stale["message"]
    ahead = jimi.post(signed(jimi.creds, "jimi.user.device.list", now + timedelta(minutes=9),
                             access_token=jimi.token, target="fleetco")).json()
    assert ahead["code"] == 0


def test_get_and_json_bodies_get_html_not_json(tracksolid_sandbox, jimi):
    url = tracksolid_sandbox.route_url
    body = signed(jimi.creds, "jimi.oauth.token.get", jimi.clock(), user_id="fleetco",
                  user_pwd_md5="x", expires_in=60)
    for response in (requests.get(url, params=body, timeout=10),
                     requests.post(url, json=body, timeout=10)):
        assert "text/html" in response.headers["Content-Type"]
        with pytest.raises(ValueError):
            response.json()
    assert requests.get(url, timeout=10).status_code == 405
    assert requests.post(url, json=body, timeout=10).status_code == 200


def test_unknown_method_and_missing_parameter_are_1001(jimi):
    assert jimi.call("jimi.no.such.method")["message"] == "method not found"
    reply = jimi.call("jimi.user.device.list")
    assert reply["code"] == 1001 and "target" in reply["message"]


def test_request_log_counts_calls_without_secrets(tracksolid_sandbox, jimi):
    jimi.call("jimi.user.device.list", target="fleetco")
    jimi.call("jimi.user.device.list", target="fleetco")
    server = tracksolid_sandbox.server
    assert server.count("jimi.oauth.token.get") == 1
    assert server.count("jimi.user.device.list", vendor_code=0) == 2
    logged = repr(server.requests())
    for secret in (jimi.token, jimi.refresh_token, jimi.creds["app_secret"],
                   hashlib.md5(b"sandbox-password").hexdigest()):
        assert secret not in logged


# -- tokens ----------------------------------------------------------------------------------
def test_token_get_is_limited_to_once_a_minute(jimi, tracksolid_sandbox):
    bad = dict(jimi.creds, user_password="wrong")
    assert Jimi(jimi.url, bad, jimi.clock).login()["code"] == 1002   # a failure does not count
    assert jimi.login()["code"] == 0
    again = jimi.login()
    assert again["code"] == 1006 and "once a minute" in again["message"]
    tracksolid_sandbox.clock.advance(seconds=61)
    assert jimi.login()["code"] == 0


def test_token_lifetime_is_capped_and_overridable(jimi, tracksolid_sandbox):
    assert jimi.login(expires_in=86400)["result"]["expiresIn"] == 7200
    tracksolid_sandbox.knobs.token_lifetime_s = 30
    tracksolid_sandbox.clock.advance(seconds=61)
    assert jimi.login(expires_in=7200)["result"]["expiresIn"] == 30


def test_expired_token_is_1004_and_refresh_renews_it(jimi, tracksolid_sandbox):
    tracksolid_sandbox.knobs.token_lifetime_s = 5
    jimi.login()
    assert jimi.call("jimi.user.device.list", target="fleetco")["code"] == 0
    tracksolid_sandbox.clock.advance(seconds=6)
    expired = jimi.call("jimi.user.device.list", target="fleetco")
    assert expired["code"] == 1004 and "expired" in expired["message"]
    tracksolid_sandbox.knobs.token_lifetime_s = None
    renewed = jimi.raw("jimi.oauth.token.refresh", access_token=jimi.token,
                       refresh_token=jimi.refresh_token, expires_in=7200)
    assert renewed["code"] == 0 and renewed["result"]["accessToken"] != jimi.token
    jimi.token = renewed["result"]["accessToken"]
    assert jimi.call("jimi.user.device.list", target="fleetco")["code"] == 0


def test_refresh_needs_the_matching_pair_and_a_live_refresh_token(jimi, tracksolid_sandbox):
    jimi.login()
    first = (jimi.token, jimi.refresh_token)
    tracksolid_sandbox.clock.advance(seconds=61)
    jimi.login()
    mixed = jimi.raw("jimi.oauth.token.refresh", access_token=first[0],
                     refresh_token=jimi.refresh_token, expires_in=7200)
    assert mixed["code"] == 1004
    forged = jimi.refresh_token[:-2] + ("AA" if not jimi.refresh_token.endswith("AA") else "BB")
    assert jimi.raw("jimi.oauth.token.refresh", access_token=jimi.token, refresh_token=forged,
                    expires_in=7200)["code"] == 1004
    tracksolid_sandbox.clock.advance(hours=24, seconds=1)
    late = jimi.raw("jimi.oauth.token.refresh", access_token=jimi.token,
                    refresh_token=jimi.refresh_token, expires_in=7200)
    assert late["code"] == 1004 and "expired" in late["message"]


def test_revoked_tokens_are_1004(jimi, tracksolid_sandbox):
    jimi.login()
    tracksolid_sandbox.knobs.revoke_tokens_issued_before = tracksolid_sandbox.now() + timedelta(
        seconds=1)
    assert jimi.call("jimi.user.device.list", target="fleetco")["code"] == 1004
    assert jimi.raw("jimi.oauth.token.refresh", access_token=jimi.token,
                    refresh_token=jimi.refresh_token, expires_in=7200)["code"] == 1004


def test_a_token_works_on_another_sandbox_of_the_same_world(jimi, world, tracksolid_sandbox):
    jimi.login()
    with tracksolid.make_server(world, now=tracksolid_sandbox.clock) as other:
        elsewhere = Jimi(other.base_url + tracksolid.ROUTE_PATH, jimi.creds, jimi.clock)
        elsewhere.token = jimi.token
        assert elsewhere.call("jimi.user.device.list", target="fleetco")["code"] == 0
        assert other.count("jimi.oauth.token.get") == 0


# -- frequency limit ---------------------------------------------------------------------------
def test_more_than_25_calls_in_a_second_is_1006(world):
    instant = [1000.0]
    clock = ManualClock(world.now())
    with tracksolid.make_server(world, now=clock, rate_clock=lambda: instant[0]) as server:
        jimi = Jimi(server.base_url + tracksolid.ROUTE_PATH, dict(tracksolid.CREDENTIALS), clock)
        jimi.login()                                   # token.get is outside the window
        codes = [jimi.call("jimi.user.child.list", target="fleetco")["code"] for _ in range(26)]
        assert codes[:25] == [0] * 25
        assert codes[25] == 1006
        assert jimi.call("jimi.user.child.list", target="fleetco")["code"] == 1006
        instant[0] += 0.5
        assert jimi.call("jimi.user.child.list", target="fleetco")["code"] == 1006
        instant[0] += 0.6                               # the first 25 calls left the window
        assert jimi.call("jimi.user.child.list", target="fleetco")["code"] == 0
        assert server.count("jimi.user.child.list", vendor_code=1006) == 3


def test_force_1006_knob_throttles_the_next_calls_but_not_token_get(jimi, tracksolid_sandbox):
    tracksolid_sandbox.knobs.force_1006_next = 2
    assert jimi.login()["code"] == 0
    replies = [jimi.call("jimi.user.device.list", target="fleetco") for _ in range(3)]
    assert [r["code"] for r in replies] == [1006, 1006, 0]
    assert "frequency" in replies[0]["message"]


# -- accounts and devices --------------------------------------------------------------------
def test_child_walk_finds_every_tracksolid_device_once(jimi, world):
    seen: list[str] = []
    pending = ["fleetco"]
    accounts = 0
    while pending:
        account = pending.pop()
        accounts += 1
        listed = jimi.call("jimi.user.device.list", target=account, page_no=1, page_size=1)
        assert listed["code"] == 0
        assert all(isinstance(row["enabledFlag"], int) for row in listed["result"])
        seen += [row["imei"] for row in listed["result"]]
        children = jimi.call("jimi.user.child.list", target=account)["result"]
        assert all(child["parentAccount"] == account and child["type"] == "user"
                   for child in children)
        pending += [child["account"] for child in children]
    expected = sorted(d.imei for d in tracksolid_devices(world))
    assert sorted(seen) == expected and len(seen) == len(set(seen))
    assert accounts == sum(1 for a in world.accounts if a.platform == "tracksolid")
    root_only = jimi.call("jimi.user.device.list", target="fleetco")["result"]
    assert len(root_only) < len(expected), "the device list must not be recursive"


def test_sub_account_token_cannot_reach_its_parent_or_foreign_devices(tracksolid_sandbox, world):
    sub = next(a for a in world.accounts if a.platform == "tracksolid" and a.parent_id)
    jimi = Jimi(tracksolid_sandbox.route_url, tracksolid_sandbox.credentials,
                tracksolid_sandbox.clock, user_id=sub.account_id)
    assert jimi.call("jimi.user.device.list", target=sub.account_id)["code"] == 0
    assert jimi.call("jimi.user.device.list", target=sub.parent_id)["code"] == 1002
    navixy = next(d for d in world.devices if d.platform != "tracksolid")
    reply = jimi.call("jimi.track.device.detail", imei=navixy.imei)
    assert reply["code"] == 1002 and "illegal device" in reply["message"]
    assert jimi.call("jimi.track.device.detail", imei="000000000000000")["code"] == 1002


def test_device_detail_shape(jimi, world, tracksolid_sandbox):
    device = tracksolid_devices(world)[0]
    detail = jimi.call("jimi.track.device.detail", imei=device.imei)["result"]
    assert detail["imei"] == device.imei and detail["mcType"] == device.model
    assert detail["sim"] == device.sim_msisdn and detail["iccid"] == device.sim_iccid
    assert detail["electQuantity"] == "" and detail["account"] == device.account_id
    assert isinstance(detail["currentMileage"], str)
    assert float(detail["currentMileage"]) == pytest.approx(
        world.odometer_km(device.imei, tracksolid_sandbox.now()))
    assert detail["expiration"] == f"{device.expiration_date:%Y-%m-%d} 23:59:59"


def test_location_rows_carry_strings_and_expired_devices_report_zero(jimi, world,
                                                                     tracksolid_sandbox):
    now = tracksolid_sandbox.now()
    by_imei: dict[str, dict[str, Any]] = {}
    for account in {d.account_id for d in tracksolid_devices(world)}:
        for row in jimi.call("jimi.user.device.location.list", target=account)["result"]:
            by_imei[row["imei"]] = row
    with_fix = {d.imei for d in tracksolid_devices(world) if world.last_fix(d.imei, now)}
    assert set(by_imei) == with_fix
    for imei, row in by_imei.items():
        device = world.device(imei)
        fix = world.last_fix(imei, now)
        assert isinstance(row["speed"], str) and isinstance(row["currentMileage"], str)
        assert row["gpsTime"] == fix["gps_time"].strftime(TS)
        if device.expiration_date < now.date():
            assert (row["lat"], row["lng"], row["expireFlag"]) == (0, 0, "0")
        else:
            assert row["lat"] == pytest.approx(fix["lat"], abs=1e-6)
            assert row["expireFlag"] == "1"
    some = sorted(by_imei)[:3]
    got = jimi.call("jimi.device.location.get", imeis=",".join(some))["result"]
    assert [row["imei"] for row in got] == some and got[0] == by_imei[some[0]]


def test_batch_methods_take_at_most_50_imeis(jimi, world):
    # The 60-device world has fewer than 51 tracksolid devices; the count is checked before
    # the IMEIs themselves, as the real API does.
    real = [d.imei for d in tracksolid_devices(world)]
    many = ",".join((real + [f"35{n:013d}" for n in range(51)])[:51])
    for method, extra in (("jimi.device.location.get", {}),
                          ("jimi.device.track.mileage", {"begin_time": "2026-11-19 00:00:00",
                                                         "end_time": "2026-11-20 00:00:00"}),
                          ("jimi.device.alarm.list", {"begin_time": "2026-11-19 00:00:00",
                                                      "end_time": "2026-11-20 00:00:00"})):
        reply = jimi.call(method, imeis=many, **extra)
        assert str(reply["code"]) == "1001" and "50" in reply.get("message", reply.get("msg"))


# -- trips ---------------------------------------------------------------------------------
def test_mileage_rows_match_trips_page_by_100_and_carry_totals(jimi, world, tracksolid_sandbox):
    devices = tracksolid_devices(world)[:20]
    begin, end = datetime(2026, 11, 13), datetime(2026, 11, 20)
    truth = [(d.imei, t) for d in devices for day in days(begin.date(), end.date())
             for t in world.day(d.imei, day).trips if begin <= t.start < end]
    assert len(truth) > 100, "the window must need more than one page"
    rows, start_row = [], 0
    while True:
        reply = jimi.call("jimi.device.track.mileage", imeis=",".join(d.imei for d in devices),
                          begin_time=begin.strftime(TS), end_time=end.strftime(TS),
                          start_row=start_row, page_size=500)
        assert reply["code"] == 0 and len(reply["result"]) <= 100
        rows += reply["result"]
        if len(reply["result"]) < 100:
            break
        start_row += 100
    assert [(r["imei"], r["startTime"]) for r in rows] == [
        (imei, t.start.strftime(TS)) for imei, t in truth]
    first = rows[0]
    trip = truth[0][1]
    assert isinstance(first["distance"], str)
    assert float(first["distance"]) == pytest.approx(trip.distance_km, abs=1e-3)
    assert {"runTimeSecond", "elapsed"} <= {k for r in rows for k in r}
    totals = {t["imei"]: float(t["totalMileage"]) for t in reply["data"]}
    assert set(totals) == {d.imei for d in devices}
    assert totals[devices[0].imei] == pytest.approx(
        sum(t.distance_km for imei, t in truth if imei == devices[0].imei), abs=1e-3)


def test_mileage_unit_knob_serves_metres(jimi, world, tracksolid_sandbox):
    device = tracksolid_devices(world)[0]
    window = {"imeis": device.imei, "begin_time": "2026-11-19 00:00:00",
              "end_time": "2026-11-20 00:00:00"}
    km = jimi.call("jimi.device.track.mileage", **window)["result"]
    tracksolid_sandbox.knobs.mileage_unit = "m"
    metres = jimi.call("jimi.device.track.mileage", **window)["result"]
    assert km and len(km) == len(metres)
    assert float(metres[0]["distance"]) == pytest.approx(float(km[0]["distance"]) * 1000, abs=1)


def test_trips_still_running_at_now_are_not_reported(jimi, world, tracksolid_sandbox):
    device, trip = next((d, t) for d in tracksolid_devices(world)
                        for t in world.day(d.imei, date(2026, 11, 19)).trips)
    window = {"imeis": device.imei, "begin_time": "2026-11-19 00:00:00",
              "end_time": "2026-11-20 00:00:00"}
    tracksolid_sandbox.clock.set(trip.end - timedelta(seconds=1))
    starts = [r["startTime"] for r in jimi.call("jimi.device.track.mileage", **window)["result"]]
    assert trip.start.strftime(TS) not in starts
    tracksolid_sandbox.clock.set(trip.end)
    starts = [r["startTime"] for r in jimi.call("jimi.device.track.mileage", **window)["result"]]
    assert trip.start.strftime(TS) in starts


# -- track points ----------------------------------------------------------------------------
def test_track_list_limits(jimi, world, tracksolid_sandbox):
    a, b = (d.imei for d in tracksolid_devices(world)[:2])
    now = tracksolid_sandbox.now()

    def track(imei: str, begin: datetime, end: datetime) -> dict[str, Any]:
        return jimi.call("jimi.device.track.list", imei=imei, begin_time=begin.strftime(TS),
                         end_time=end.strftime(TS))

    assert track(f"{a},{b}", now - timedelta(hours=2), now - timedelta(hours=1))["code"] == 1001
    over = track(a, now - timedelta(days=8, hours=1), now - timedelta(hours=1))
    assert over["code"] == 1001 and "7 days" in over["message"]
    assert track(a, now - timedelta(hours=1), now + timedelta(minutes=1))["code"] == 1001
    assert track(a, now - timedelta(hours=1), now)["code"] == 1001
    old = now - timedelta(days=100)
    assert track(a, old, old + timedelta(days=1))["code"] == 1001
    ok = track(a, now - timedelta(days=7), now - timedelta(seconds=1))
    assert ok["code"] == 0 and ok["result"]


def test_track_points_match_the_world_and_some_hours_are_unpadded(jimi, world, tracksolid_sandbox):
    begin, end = datetime(2026, 11, 19, 0, 0, 0), datetime(2026, 11, 19, 23, 59, 59)
    unpadded_seen = False
    for device in tracksolid_devices(world)[:6]:
        reply = jimi.call("jimi.device.track.list", imei=device.imei,
                          begin_time=begin.strftime(TS), end_time=end.strftime(TS))
        points = world.day(device.imei, begin.date()).points
        expected = points.filter(points["received_at"] <= tracksolid_sandbox.now())
        assert len(reply["result"]) == expected.height
        for row, gps_time in zip(reply["result"], expected["gps_time"].to_list()):
            assert datetime.strptime(row["gpsTime"], TS) == gps_time.replace(microsecond=0)
            assert isinstance(row["lat"], float) and row["accStatus"] in ("0", "1")
        unpadded_seen |= any(r["gpsTime"][11] != "0" and r["gpsTime"][12] == ":"
                             for r in reply["result"])
    assert unpadded_seen


def test_late_points_are_hidden_until_received(jimi, world, tracksolid_sandbox):
    now = tracksolid_sandbox.now()
    late = None
    for device in tracksolid_devices(world):
        for day in days(now.date() - timedelta(days=5), now.date() - timedelta(days=1)):
            points = world.day(device.imei, day).points
            candidates = points.filter(points["late"]
                                       & (points["received_at"] - points["gps_time"]
                                          > timedelta(minutes=10)))
            if candidates.height:
                late = (device, candidates.row(0, named=True))
                break
        if late:
            break
    assert late is not None, "the world must contain late uploads"
    device, point = late
    window = {"imei": device.imei,
              "begin_time": (point["gps_time"] - timedelta(minutes=1)).strftime(TS),
              "end_time": (point["gps_time"] + timedelta(minutes=1)).strftime(TS)}
    stamp = point["gps_time"].replace(microsecond=0)
    tracksolid_sandbox.clock.set(point["received_at"] - timedelta(seconds=1))
    jimi.login()
    hidden = jimi.call("jimi.device.track.list", **window)["result"]
    assert stamp not in [datetime.strptime(r["gpsTime"], TS) for r in hidden]
    tracksolid_sandbox.clock.set(point["received_at"])
    shown = {datetime.strptime(r["gpsTime"], TS): r
             for r in jimi.call("jimi.device.track.list", **window)["result"]}
    assert shown[stamp]["gpsMode"] == "1"


# -- parking ---------------------------------------------------------------------------------
def _parking(jimi: Jimi, account: str, imeis: list[str], **extra: Any) -> dict[str, Any]:
    params = {"account": account, "imeis": ",".join(imeis), "start_time": "2026-11-17 00:00:00",
              "end_time": "2026-11-20 00:00:00", "start_row": 0, "page_size": 100, **extra}
    return jimi.call("jimi.open.platform.report.parking", **params)


def test_parking_without_acc_type_is_empty_success(jimi, world):
    imeis = [d.imei for d in tracksolid_devices(world)[:5]]
    reply = _parking(jimi, "fleetco", imeis)
    assert reply["code"] == 0 and reply["result"] is None
    assert reply["data"] == {"rows": [], "dataTotalRows": "0"}
    assert _parking(jimi, "fleetco", imeis, acc_type="")["data"]["rows"] == []


def test_parking_rows_match_the_world_stops(jimi, world, tracksolid_sandbox):
    devices = tracksolid_devices(world)[:8]
    imeis = [d.imei for d in devices]
    start, end = datetime(2026, 11, 17), datetime(2026, 11, 20)
    truth = [(d.imei, s) for d in devices for day in days(start.date(), end.date())
             for s in world.day(d.imei, day).stops
             if s.kind == "parking" and start <= s.start < end
             and s.end <= tracksolid_sandbox.now()]
    rows, start_row = [], 0
    while True:
        data = _parking(jimi, "fleetco", imeis, acc_type="0", start_row=start_row,
                        page_size=20)["data"]
        assert data["dataTotalRows"] == str(len(truth))
        rows += data["rows"]
        if start_row + 20 >= int(data["dataTotalRows"]):
            break
        start_row += 20
    assert [(r["imei"], r["startTime"]) for r in rows] == [
        (imei, s.start.strftime("%Y-%m-%dT%H:%M:%S.000Z")) for imei, s in truth]
    assert all(r["endTime"].endswith(".000Z") and isinstance(r["durSecond"], int) for r in rows)
    assert any("stopSecond" not in r for r in rows) and any("stopSecond" in r for r in rows)
    off_only = _parking(jimi, "fleetco", imeis, acc_type="1", page_size=100)["data"]
    assert int(off_only["dataTotalRows"]) == sum(1 for _, s in truth if not s.ignition_on)
    assert all(r["accStatus"] == "0" for r in off_only["rows"])


def test_parking_rejects_bad_paging(jimi, world):
    imeis = [tracksolid_devices(world)[0].imei]
    for start_row, page_size in ((5, 20), (0, 0), (0, 101), (-20, 20)):
        reply = _parking(jimi, "fleetco", imeis, acc_type="0", start_row=start_row,
                         page_size=page_size)
        assert reply["code"] == 1001, (start_row, page_size)
    assert _parking(jimi, "fleetco", imeis, acc_type="0", start_row=40,
                    page_size=20)["code"] == 0


# -- alarms ----------------------------------------------------------------------------------
def _alarms(jimi: Jimi, imeis: list[str], begin: datetime, end: datetime,
            **extra: Any) -> dict[str, Any]:
    return jimi.call("jimi.device.alarm.list", imeis=",".join(imeis),
                     begin_time=begin.strftime(TS), end_time=end.strftime(TS), **extra)


def test_alarm_pages_match_the_world(jimi, world):
    devices = tracksolid_devices(world)[:10]
    begin, end = datetime(2026, 11, 16), datetime(2026, 11, 20)
    truth = sorted((a.time, d.imei, a.kind) for d in devices
                   for day in days(begin.date(), end.date())
                   for a in world.day(d.imei, day).alarms if begin <= a.time < end)
    assert 0 < len(truth) < 1000
    rows, page_no = [], 1
    while True:
        reply = _alarms(jimi, [d.imei for d in devices], begin, end, page_no=page_no,
                        page_size=50)
        assert reply["code"] == "0" and reply["msg"] == "success" and "message" not in reply
        rows += reply["result"]
        if len(reply["result"]) < 50:
            break
        page_no += 1
    assert [(r["alertTime"], r["imei"]) for r in rows] == [
        (t.strftime(TS), imei) for t, imei, _ in truth]
    assert all(isinstance(r["alertTypeId"], str) and isinstance(r["speed"], str) for r in rows)
    names = Counter("alarmTypeName" if "alarmTypeName" in r else "alertTypeName" for r in rows)
    assert names["alarmTypeName"] > names["alertTypeName"] > 0
    fences = [r for r, (_, _, kind) in zip(rows, truth) if kind.startswith("geofence")]
    assert all(r["alertTypeId"] in ("in", "out") and r["geoid"] for r in fences)


def test_alarm_queries_reach_at_most_1000_rows_and_one_month(jimi, world):
    imeis = [d.imei for d in tracksolid_devices(world)]
    end = datetime(2026, 11, 20)
    over = _alarms(jimi, imeis, end - timedelta(days=32), end)
    assert over["code"] == "1001" and "1 month" in over["msg"]
    assert _alarms(jimi, imeis, end - timedelta(days=1), end, page_size=101)["code"] == "1001"
    # The shortest window of this world holding more than 1000 alarms (every device-day in it
    # has to be generated, so it is kept short).
    begin = datetime(2026, 11, 2)
    total = sum(1 for imei in imeis for day in days(begin.date(), end.date())
                for a in world.day(imei, day).alarms if begin <= a.time < end)
    assert total > 1000, "the window must hold more alarms than one query can reach"
    last_full = _alarms(jimi, imeis, begin, end, page_no=10, page_size=100)["result"]
    assert len(last_full) == 100
    assert _alarms(jimi, imeis, begin, end, page_no=11, page_size=100)["result"] == []
    rest = _alarms(jimi, imeis, datetime.strptime(last_full[-1]["alertTime"], TS), end,
                   page_size=100)["result"]
    assert rest and rest[0]["alertTime"] == last_full[-1]["alertTime"], "a split window reads on"


def test_alarm_cap_knob(jimi, world, tracksolid_sandbox):
    tracksolid_sandbox.knobs.alarm_rows_reachable = 30
    imeis = [d.imei for d in tracksolid_devices(world)[:10]]
    begin, end = datetime(2026, 11, 16), datetime(2026, 11, 20)
    sizes = [len(_alarms(jimi, imeis, begin, end, page_no=n, page_size=20)["result"])
             for n in (1, 2, 3)]
    assert sizes == [20, 10, 0]


# -- generic faults --------------------------------------------------------------------------
def test_fault_knobs_503_malformed_and_truncated(jimi, tracksolid_sandbox):
    jimi.login()
    knobs = tracksolid_sandbox.knobs
    knobs.set(fail_next_5xx=2, malformed_json_next=1, truncated_body_next=1)
    first = jimi.post(signed(jimi.creds, "jimi.user.device.list", jimi.clock(),
                             access_token=jimi.token, target="fleetco"))
    second = jimi.post(signed(jimi.creds, "jimi.user.device.list", jimi.clock(),
                              access_token=jimi.token, target="fleetco"))
    assert (first.status_code, second.status_code) == (503, 503)
    malformed = jimi.post(signed(jimi.creds, "jimi.user.device.list", jimi.clock(),
                                 access_token=jimi.token, target="fleetco"))
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    truncated = jimi.post(signed(jimi.creds, "jimi.user.device.list", jimi.clock(),
                                 access_token=jimi.token, target="fleetco"))
    with pytest.raises(ValueError):
        json.loads(truncated.content)
    assert jimi.call("jimi.user.device.list", target="fleetco")["code"] == 0
    faults = [r.fault for r in tracksolid_sandbox.server.requests()
              if r.vendor_method == "jimi.user.device.list"]
    assert faults == ["5xx", "5xx", "malformed_json", "truncated", None]


def test_truncation_can_drop_the_connection_midway(jimi, tracksolid_sandbox):
    jimi.login()
    tracksolid_sandbox.knobs.set(truncated_body_next=1, truncate_mode="drop")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        jimi.post(signed(jimi.creds, "jimi.user.device.list", jimi.clock(),
                         access_token=jimi.token, target="fleetco"))
    assert jimi.call("jimi.user.device.list", target="fleetco")["code"] == 0


def test_error_rate_is_reproducible_from_the_seed(world):
    def outcomes() -> list[int]:
        with tracksolid.make_server(world, error_rate_5xx=0.5, fault_seed=7) as server:
            return [requests.get(server.base_url + tracksolid.ROUTE_PATH, timeout=10).status_code
                    for _ in range(20)]

    first = outcomes()
    assert first == outcomes()
    assert 503 in first and 405 in first


def test_a_device_installed_later_in_the_week_appears_on_its_activation_day(jimi, world, tracksolid_sandbox):
    # The World's installs run through the week; until a device's activation day the account
    # does not have it: no list shows it and every call naming it is 1002, like any foreign IMEI.
    now = tracksolid_sandbox.now()
    later = min((d for d in world.devices if d.platform == "tracksolid" and d.activation_date > now.date()),
                key=lambda d: d.activation_date)
    account = later.account_id

    def listed() -> set[str]:
        return {row["imei"] for row in jimi.call("jimi.user.device.list", target=account)["result"]}

    assert later.imei not in listed()
    day = later.activation_date
    whole_day = {"begin_time": f"{day} 00:00:00", "end_time": f"{day} 23:59:59"}
    for method, params in (("jimi.track.device.detail", {"imei": later.imei}),
                           ("jimi.device.location.get", {"imeis": later.imei}),
                           ("jimi.device.track.list", {"imei": later.imei, **whole_day})):
        assert code(jimi.call(method, **params)) == "1002", method
    # the first day from its activation on which it drives (it may be switched off on its first)
    driving = next(day + timedelta(days=k) for k in range(30)
                   if world.day(later.imei, day + timedelta(days=k)).status == "driving")
    tracksolid_sandbox.clock.set(datetime.combine(driving, datetime.min.time()) + timedelta(hours=23))
    jimi.login()
    assert later.imei in listed()
    detail = jimi.call("jimi.track.device.detail", imei=later.imei)["result"]
    assert detail["activationTime"].startswith(day.isoformat())
    located = jimi.call("jimi.device.location.get", imeis=later.imei)["result"]
    assert [row["imei"] for row in located] == [later.imei]
    points = world.day(later.imei, driving).points
    end = datetime.combine(driving, datetime.min.time()) + timedelta(hours=22, minutes=59, seconds=59)
    track = jimi.call("jimi.device.track.list", imei=later.imei, begin_time=f"{driving} 00:00:00",
                      end_time=end.strftime(TS))["result"]
    served = points.filter((points["received_at"] <= tracksolid_sandbox.now()) & (points["gps_time"] <= end))
    assert len(track) == served.height > 0
