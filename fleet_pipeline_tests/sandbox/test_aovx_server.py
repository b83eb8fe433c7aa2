"""Protocol conformance of the AOVX sandbox over real HTTP on loopback.

Expected rows come from the World (`ota_attempts`, `ota_attempts_updated`) and the response shape
from the vendor document, never from the server's own helpers, so a wrong window bound, sort
order, type or envelope on the server fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
import requests

from fleet_pipeline.sandbox import aovx
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.world import World

NOW = datetime(2026, 11, 20, 12)
FMT = "%Y-%m-%d %H:%M:%S"
WINDOW = (datetime(2026, 10, 1), datetime(2026, 11, 21))

# The documented response (aovx-ota-report.md section 3), as JSON Schema: total/size strings,
# upgradeInfo a string, status an int, the timestamps numbers (as in the doc's example).
ROW_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["terminalId", "terminalNum", "upgradeInfo", "status", "sendTime", "sendTimestamp",
                 "dateTime", "mark", "dateTimestamp"],
    "properties": {
        "terminalId": {"type": "string", "pattern": "^[0-9A-F]{32}$"},
        "terminalNum": {"type": "string", "pattern": "^[0-9]{12}$"},
        "upgradeInfo": {"type": "string"},
        "status": {"type": "integer", "enum": [-1, 1, 2, 3, 4]},
        "sendTime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
        "sendTimestamp": {"type": "integer"},
        "dateTime": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
        "mark": {"type": "string", "pattern": "^[0-9A-F]{32}$"},
        "dateTimestamp": {"type": "integer"},
    },
}
REPORT_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "data"],
    "properties": {
        "code": {"const": 200},
        "message": {"type": "string"},
        "data": {
            "type": "object",
            "required": ["total", "size", "data"],
            "properties": {
                "total": {"type": "string", "pattern": "^[0-9]+$"},
                "size": {"type": "string", "pattern": "^[0-9]+$"},
                "data": {"type": "array", "items": ROW_SCHEMA},
            },
        },
    },
}
UPGRADE_INFO_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["TYPE", "MODE", "PROTOCOL", "VERSION", "URL"],
    "properties": {k: {"type": "string"} for k in ("TYPE", "MODE", "PROTOCOL", "VERSION", "URL")},
}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=42, n_devices=200, now=lambda: NOW)


@pytest.fixture(scope="module")
def terminal_ids(world: World) -> list[str]:
    return [world.aovx_terminal_id(d.imei) for d in world.devices
            if d.firmware_platform == "aovx" and d.activation_date <= NOW.date()]


class Sandbox:
    def __init__(self, server: SandboxServer[aovx.AovxKnobs], clock: ManualClock) -> None:
        self.server, self.clock = server, clock
        self.base = server.base_url + aovx.API_PREFIX
        self.http = requests.Session()

    def report(self, headers: dict[str, str] | None = None, **body: Any) -> requests.Response:
        auth = {"Authorization": f"Bearer {aovx.TOKEN}"} if headers is None else headers
        return self.http.post(self.base + aovx.OTA_REPORT_PATH, json=body, headers=auth, timeout=30)

    def ok(self, **body: Any) -> dict[str, Any]:
        response = self.report(**body)
        payload = response.json()
        assert response.status_code == 200 and payload["code"] == 200, payload
        return payload

    def error(self, code: int, **body: Any) -> dict[str, Any]:
        response = self.report(**body)
        payload = response.json()
        assert response.status_code == 200, "RuoYi answers errors with HTTP 200"
        assert payload["code"] == code, payload
        assert "data" not in payload
        return payload

    def terminals(self, **params: str) -> dict[str, Any]:
        response = self.http.get(self.base + aovx.TERMINAL_LIST_PATH, params=params,
                                 headers={"Authorization": f"Bearer {aovx.TOKEN}"}, timeout=30)
        assert response.status_code == 200
        return response.json()


@pytest.fixture
def sandbox(world: World) -> Iterator[Sandbox]:
    clock = ManualClock(NOW)
    with aovx.make_server(world, now=clock) as server:
        yield Sandbox(server, clock)


def query(ids: list[str], start: datetime = WINDOW[0], end: datetime = WINDOW[1], **extra: Any) -> dict[str, Any]:
    return {"ids": ids, "startTime": start.strftime(FMT), "endTime": end.strftime(FMT),
            "pageNum": 1, "pageSize": 100, **extra}


def all_rows(sandbox: Sandbox, ids: list[str], start: datetime, end: datetime, page_size: int) -> list[dict]:
    rows, page = [], 1
    while True:
        data = sandbox.ok(**query(ids, start, end, pageNum=page, pageSize=page_size))["data"]
        if not data["data"]:
            return rows
        rows.extend(data["data"])
        page += 1


def epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- shape and truth


def test_report_has_the_documented_shape(sandbox: Sandbox, terminal_ids: list[str], world: World) -> None:
    payload = sandbox.ok(**query(terminal_ids, pageSize=10))
    jsonschema.validate(payload, REPORT_SCHEMA)
    data = payload["data"]
    assert payload["message"] == "Operation succeeded"
    assert int(data["total"]) > 10 and len(data["data"]) == 10
    assert int(data["size"]) == -(-int(data["total"]) // 10)
    for row in data["data"]:
        info = json.loads(row["upgradeInfo"])   # a JSON object encoded in a string
        jsonschema.validate(info, UPGRADE_INFO_SCHEMA)
        imei = world.imei_for_terminal(row["terminalId"])
        attempt = next(a for a in world.ota_attempts(imei) if a.attempt_id == row["mark"])
        assert info == {"TYPE": attempt.upgrade_type, "MODE": attempt.upgrade_mode, "PROTOCOL": attempt.protocol,
                        "VERSION": attempt.version, "URL": attempt.url}
        assert row["terminalNum"] == world.aovx_terminal_num(imei)
        assert row["status"] == attempt.status_at(NOW)
        assert row["sendTime"] == iso_ms(attempt.sent_at) and row["sendTimestamp"] == epoch_ms(attempt.sent_at)
        updated = attempt.last_update_at(NOW)
        assert row["dateTime"] == iso_ms(updated) and row["dateTimestamp"] == epoch_ms(updated)


def test_rows_are_the_worlds_attempts_updated_in_the_window(sandbox: Sandbox, terminal_ids: list[str],
                                                            world: World) -> None:
    # one day of the running rollout: the third stage day of the newest AOVX campaign
    running = max((c for c in world.campaigns if c.platform == "aovx"), key=lambda c: c.start_day)
    stage_day = datetime.combine(running.start_day + timedelta(days=running.stages[2][0]), datetime.min.time())
    for start, end in [WINDOW, (stage_day, stage_day + timedelta(days=1)),
                       (datetime(2025, 12, 1), datetime(2026, 3, 1))]:
        rows = all_rows(sandbox, terminal_ids, start, end, 100)
        expected = world.ota_attempts_updated("aovx", start, end, NOW)
        assert expected, (start, end)
        assert [r["mark"] for r in rows] == [a.attempt_id for a in expected]   # sorted by last update
        assert [r["status"] for r in rows] == [a.status_at(NOW) for a in expected]


def test_attempts_last_updated_before_the_retention_window_are_gone(sandbox: Sandbox, terminal_ids: list[str],
                                                                   world: World) -> None:
    # Asked for everything since 2020: what the World updated within retention_days of the clock.
    since = datetime(2020, 1, 1)
    everything = world.ota_attempts_updated("aovx", since, NOW, NOW)
    for retention_days in (aovx.RETENTION_DAYS, 120):
        sandbox.server.knobs.set(retention_days=retention_days)
        kept_from = NOW - timedelta(days=retention_days)
        rows = all_rows(sandbox, terminal_ids, since, NOW, 100)
        expected = [a.attempt_id for a in everything if a.last_update_at(NOW) >= kept_from]
        assert [r["mark"] for r in rows] == expected
    assert 0 < len(expected) < len(everything), "a 120-day retention drops the older rollout only"


def test_window_bounds_are_start_inclusive_end_exclusive(sandbox: Sandbox, terminal_ids: list[str],
                                                         world: World) -> None:
    attempt = world.ota_attempts_updated("aovx", *WINDOW, NOW)[0]
    updated = attempt.last_update_at(NOW)
    second = updated.replace(microsecond=0)
    at_start = all_rows(sandbox, terminal_ids, second, second + timedelta(seconds=1), 100)
    assert attempt.attempt_id in [r["mark"] for r in at_start]
    before = all_rows(sandbox, terminal_ids, second - timedelta(hours=1), second, 100)
    assert attempt.attempt_id not in [r["mark"] for r in before]


def test_only_the_requested_terminals_and_unknown_ids_give_nothing(sandbox: Sandbox, terminal_ids: list[str],
                                                                   world: World) -> None:
    some = terminal_ids[:3]
    rows = all_rows(sandbox, some + ["0" * 32, "not-a-terminal"], *WINDOW, 100)
    wanted = {world.imei_for_terminal(t) for t in some}
    expected = [a.attempt_id for a in world.ota_attempts_updated("aovx", *WINDOW, NOW) if a.imei in wanted]
    assert [r["mark"] for r in rows] == expected
    assert sandbox.ok(**query(["0" * 32]))["data"] == {"total": "0", "size": "0", "data": []}


def test_paging_returns_every_attempt_exactly_once(sandbox: Sandbox, terminal_ids: list[str], world: World) -> None:
    expected = [a.attempt_id for a in world.ota_attempts_updated("aovx", *WINDOW, NOW)]
    for page_size in (1, 7, 100):
        rows = all_rows(sandbox, terminal_ids, *WINDOW, page_size)
        assert [r["mark"] for r in rows] == expected
        first = sandbox.ok(**query(terminal_ids, pageSize=page_size))["data"]
        assert first["total"] == str(len(expected)) and first["size"] == str(-(-len(expected) // page_size))


def test_default_page_size_is_twenty_and_reasonable_paging_repeats_the_last_page(
        sandbox: Sandbox, terminal_ids: list[str]) -> None:
    body = query(terminal_ids)
    del body["pageSize"], body["pageNum"]
    data = sandbox.ok(**body)["data"]
    assert len(data["data"]) == 20 and int(data["total"]) > 20
    pages = int(sandbox.ok(**query(terminal_ids, pageSize=7))["data"]["size"])
    last = sandbox.ok(**query(terminal_ids, pageSize=7, pageNum=pages))["data"]["data"]
    assert sandbox.ok(**query(terminal_ids, pageSize=7, pageNum=pages + 1))["data"]["data"] == []
    sandbox.server.knobs.set(reasonable_paging=True)
    assert sandbox.ok(**query(terminal_ids, pageSize=7, pageNum=pages + 5))["data"]["data"] == last


def test_status_progression_is_visible_as_the_clock_moves(sandbox: Sandbox, world: World) -> None:
    attempt = next(a for a in world.ota_attempts_updated("aovx", *WINDOW, NOW)
                   if [s for _, s in a.history] == [1, 2, 3])
    terminal = world.aovx_terminal_id(attempt.imei)
    (sent, _), (downloading, _), (done, _) = attempt.history
    day = (datetime.combine(sent.date(), datetime.min.time()), datetime.combine(sent.date(), datetime.min.time()) + timedelta(days=2))

    def row_at(moment: datetime) -> dict | None:
        sandbox.clock.set(moment)
        rows = all_rows(sandbox, [terminal], *day, 100)
        return next((r for r in rows if r["mark"] == attempt.attempt_id), None)

    assert row_at(sent - timedelta(seconds=1)) is None   # not sent yet: it does not exist
    seen = [row_at(sent), row_at(downloading + timedelta(seconds=1)), row_at(done + timedelta(minutes=5))]
    assert [r["status"] for r in seen] == [1, 2, 3]
    assert [r["dateTime"] for r in seen] == [iso_ms(sent), iso_ms(downloading), iso_ms(done)]
    assert len({r["sendTime"] for r in seen}) == 1
    # the row left the window of its "sent" update once it progressed
    sandbox.clock.set(done + timedelta(minutes=5))
    around_sent = all_rows(sandbox, [terminal], sent.replace(microsecond=0), downloading.replace(microsecond=0), 100)
    assert attempt.attempt_id not in [r["mark"] for r in around_sent]


# --------------------------------------------------------------------------- auth and errors


def test_token_problems_are_401_with_http_200(sandbox: Sandbox, terminal_ids: list[str]) -> None:
    body = query(terminal_ids[:2])
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer "},
                    {"token": "wrong-token"}):
        response = sandbox.report(headers=headers, **body)
        payload = response.json()
        assert response.status_code == 200 and payload["code"] == 401 and "msg" in payload, payload
        assert aovx.OTA_REPORT_PATH in payload["msg"]
    # RuoYi strips an optional "Bearer "; a header named `token` is accepted too
    for headers in ({"Authorization": aovx.TOKEN}, {"token": aovx.TOKEN}):
        assert sandbox.report(headers=headers, **body).json()["code"] == 200
    sandbox.server.knobs.set(force_401_next=1)
    assert sandbox.report(**body).json()["code"] == 401
    assert sandbox.report(**body).json()["code"] == 200
    sandbox.server.knobs.set(token="rotated")
    assert sandbox.report(**body).json()["code"] == 401
    assert sandbox.server.count(aovx.OTA_REPORT, vendor_code=401) == 6


@pytest.mark.parametrize("change", [
    {"ids": None}, {"ids": []}, {"ids": "ABC"}, {"ids": [1, 2]}, {"startTime": None},
    {"endTime": ""}, {"startTime": "2026-11-01"}, {"endTime": "2026-11-21T00:00:00Z"},
    {"startTime": "2026-11-20 00:00:00", "endTime": "2026-11-19 00:00:00"},
    {"pageNum": 0}, {"pageSize": 0}, {"pageSize": 101}, {"pageSize": "x"},
])
def test_bad_parameters_are_code_500(sandbox: Sandbox, terminal_ids: list[str], change: dict[str, Any]) -> None:
    body = {**query(terminal_ids[:2]), **change}
    body = {k: v for k, v in body.items() if v is not None}
    payload = sandbox.error(500, **body)
    assert payload["message"]


def test_other_protocol_errors(sandbox: Sandbox, terminal_ids: list[str]) -> None:
    auth = {"Authorization": f"Bearer {aovx.TOKEN}"}
    response = sandbox.http.post(sandbox.base + aovx.OTA_REPORT_PATH, data=b"not json", headers=auth)
    assert response.status_code == 200 and response.json()["code"] == 500
    response = sandbox.http.get(sandbox.base + aovx.OTA_REPORT_PATH, headers=auth)
    assert response.json() == {"code": 500, "msg": "Request method 'GET' not supported"}
    response = sandbox.http.post(sandbox.base + "/system/asset/command/nope", json={}, headers=auth)
    assert response.status_code == 404 and response.json()["error"] == "Not Found"
    # the security filter runs first: an unknown path without a token is a 401 too
    assert sandbox.http.post(sandbox.base + "/system/nope", json={}).json()["code"] == 401
    assert sandbox.http.post(sandbox.server.base_url + aovx.OTA_REPORT_PATH, json={}).status_code == 404
    sandbox.server.knobs.set(max_ids=2)
    assert sandbox.report(**query(terminal_ids[:3])).json()["code"] == 500
    assert sandbox.report(**query(terminal_ids[:2])).json()["code"] == 200


def test_force_500_knob_and_request_log(sandbox: Sandbox, terminal_ids: list[str]) -> None:
    sandbox.server.knobs.set(force_500_next=2)
    body = query(terminal_ids[:2])
    assert [sandbox.report(**body).json()["code"] for _ in range(3)] == [500, 500, 200]
    assert sandbox.server.count(aovx.OTA_REPORT, vendor_code=500) == 2
    assert sandbox.server.count(aovx.OTA_REPORT, vendor_code=200) == 1
    assert all(r.path == aovx.API_PREFIX + aovx.OTA_REPORT_PATH for r in sandbox.server.requests())


# --------------------------------------------------------------------------- terminal list


def test_terminal_list_is_the_worlds_activated_aovx_devices(sandbox: Sandbox, world: World) -> None:
    payload = sandbox.terminals()
    assert payload["code"] == 200 and payload["total"] == len(payload["rows"])
    expected = sorted((d for d in world.devices if d.firmware_platform == "aovx" and d.activation_date <= NOW.date()),
                      key=lambda d: d.imei)
    assert [r["imei"] for r in payload["rows"]] == [d.imei for d in expected]
    for row in payload["rows"]:
        assert set(row) == {"terminalId", "terminalNum", "imei"}
        assert row["terminalId"] == world.aovx_terminal_id(row["imei"])
        assert re.fullmatch(r"\d{12}", row["terminalNum"])
    paged = sandbox.terminals(pageNum="2", pageSize="5")
    assert paged["rows"] == payload["rows"][5:10] and paged["total"] == payload["total"]
    sandbox.clock.set(datetime(2024, 6, 1))
    earlier = sandbox.terminals()
    assert 0 < earlier["total"] < payload["total"]
