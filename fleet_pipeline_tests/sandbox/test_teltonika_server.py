"""Protocol conformance of the Teltonika FOTA WEB API sandbox over real HTTP on loopback.

Every 200 and error body is validated against the official OpenAPI schemas (an unchanged excerpt
of `docs/vendor-apis/teltonika-official/fota-openapi.json` beside this file), converted from OpenAPI
3.0 to JSON Schema 2020-12 (`nullable` -> a "null" type) with the spec's own formats asserted.
Expected values come from the World directly, never from the server's helpers.
"""

from __future__ import annotations

import http.client
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
import requests
from jsonschema import Draft202012Validator, FormatChecker

from fleet_pipeline.sandbox import teltonika
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.teltonika import TeltonikaKnobs
from fleet_pipeline.sandbox.world import Device, World

SPEC = json.loads(Path(__file__).with_name("teltonika_fota_openapi_excerpt.json").read_text())
AGENT = "FleetCo/fleet_pipeline/0.1.0"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


# -- the spec as JSON Schema ------------------------------------------------------------------
def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable` becomes a null type/enum member."""
    if isinstance(node, list):
        return [_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("nullable", "example"):
            continue
        if key == "properties":
            out[key] = {name: _json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = _json_schema(value)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


CHECKER = FormatChecker()


@CHECKER.checks("yyyy-MM-dd HH:mm:ss", raises=ValueError)
def _spec_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not TIME_RE.match(value):
        raise ValueError(f"{value!r} is not yyyy-MM-dd HH:mm:ss")
    datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return True


@CHECKER.checks("int64")
def _int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


@CHECKER.checks("int32")
def _int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


COMPONENTS = {"schemas": _json_schema(SPEC["components"]["schemas"])}


def spec_errors(schema_name: str, payload: Any) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": COMPONENTS},
        format_checker=CHECKER,
    )
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(payload))


def assert_spec(schema_name: str, payload: Any) -> None:
    errors = spec_errors(schema_name, payload)
    assert not errors, f"{schema_name}: " + "\n".join(errors[:10])


# -- fixtures ---------------------------------------------------------------------------------
class RateClock:
    """The server's rate-window clock, moved by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class FotaSandbox:
    server: SandboxServer[TeltonikaKnobs]
    world: World
    clock: ManualClock
    rate_clock: RateClock

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def knobs(self) -> TeltonikaKnobs:
        return self.server.knobs

    def get(self, path: str, params: Any = None, *, token: str | None = teltonika.API_TOKEN,
            agent: str | None = AGENT, headers: dict[str, Any] | None = None,
            method: str = "GET") -> requests.Response:
        sent: dict[str, Any] = {"Accept": "application/json", "Content-Type": "application/json",
                                "User-Agent": agent}   # None removes requests' own agent
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        url = path if path.startswith("http") else self.base_url + path
        return requests.request(method, url, params=params, headers=sent, timeout=30)

    def ok(self, path: str, params: Any = None, **kwargs: Any) -> Any:
        response = self.get(path, params, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.json()


@pytest.fixture
def fota(world: World) -> Iterator[FotaSandbox]:
    """A fresh server per test (knobs, rate windows and the log never leak)."""
    clock, rate_clock = ManualClock(world.now()), RateClock()
    with teltonika.make_server(world, now=clock, rate_clock=rate_clock) as server:
        yield FotaSandbox(server=server, world=world, clock=clock, rate_clock=rate_clock)


def fota_devices(world: World) -> list[Device]:
    return sorted((d for d in world.devices if d.firmware_platform == "teltonika_fota"),
                  key=lambda d: int(d.imei))


def navixy_group_ids(world: World) -> dict[str, int]:
    """Group ids as documented: GROUP_ID_BASE + 1.. in the World's Navixy account order."""
    accounts = [a for a in world.accounts if a.platform == "navixy"]
    return {a.account_id: teltonika.GROUP_ID_BASE + n for n, a in enumerate(accounts, start=1)}


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert_spec("ResponseMessage", body)
    assert body["message"]
    return body


# -- the validator itself ---------------------------------------------------------------------
def test_the_spec_validator_rejects_what_the_spec_forbids(fota) -> None:
    page = fota.ok("/devices", {"per_page": 2})
    assert_spec("DevicePagedResult", page)
    wrapped = {**page, "meta": {"last_page": page["last_page"]}}
    string_imei = {**page, "data": [{**page["data"][0], "imei": str(page["data"][0]["imei"])}]}
    iso_time = {**page, "data": [{**page["data"][0], "seen_at": "2026-11-20T11:00:00Z"}]}
    int_status = {**page, "data": [{**page["data"][0], "activity_status": 2}]}
    for broken in (wrapped, string_imei, iso_time, int_status):
        assert spec_errors("DevicePagedResult", broken)


# -- devices ----------------------------------------------------------------------------------
def test_device_pages_follow_the_spec_and_hold_every_device_once(fota) -> None:
    expected = fota_devices(fota.world)
    per_page = 7
    pages = []
    for n in range(1, math.ceil(len(expected) / per_page) + 2):    # one page past the end too
        response = fota.get("/devices", {"per_page": per_page, "page": n})
        assert response.status_code == 200
        # imei travels as a JSON number (int64), never as a string
        page = response.json()
        assert len(re.findall(r'"imei":\d{15}[,}]', response.text)) == len(page["data"])
        assert '"imei":"' not in response.text
        assert_spec("DevicePagedResult", page)
        assert "meta" not in page and "links" not in page
        pages.append(page)
    last_page = math.ceil(len(expected) / per_page)
    for n, page in enumerate(pages, start=1):
        assert (page["current_page"], page["per_page"], page["total"], page["last_page"],
                page["first_page"]) == (n, per_page, len(expected), last_page, 1)
        rows = len(page["data"])
        if n <= last_page:
            assert rows == min(per_page, len(expected) - (n - 1) * per_page)
            assert (page["from"], page["to"]) == ((n - 1) * per_page + 1, (n - 1) * per_page + rows)
        else:
            assert rows == 0 and (page["from"], page["to"]) == (0, 0)
        assert (page["next_page_url"] is None) == (n >= last_page)
        assert (page["prev_page_url"] is None) == (n == 1)
    imeis = [row["imei"] for page in pages for row in page["data"]]
    assert imeis == [int(d.imei) for d in expected]        # default order: imei ascending


def test_device_rows_carry_the_worlds_state(fota) -> None:
    world, now = fota.world, fota.clock()
    groups = navixy_group_ids(world)
    accounts = {a.account_id: a for a in world.accounts}
    rows = {row["imei"]: row for row in fota.ok("/devices", {"per_page": 100})["data"]}
    statuses = set()
    for d in fota_devices(world):
        row = rows[int(d.imei)]
        assert row["current_firmware"] == world.firmware_at(d.imei, now)
        assert (row["model"], row["iccid"], row["gsm_number"]) == (d.model, d.sim_iccid, d.sim_msisdn)
        assert (row["company_id"], row["company_name"]) == (teltonika.COMPANY_ID, "FleetCo SAS")
        assert row["group_id"] == groups[d.account_id]
        assert row["group_name"] == accounts[d.account_id].name == row["group"]["name"]
        assert len(str(row["serial"])) == 10
        assert_seen(world, d, now, row)
        statuses.add(row["activity_status"])
        first_login = datetime.strptime(row["first_login"], "%Y-%m-%d %H:%M:%S")
        assert first_login.date() == d.activation_date
        changes = [t for a in world.ota_attempts(d.imei) for t, s in a.history if s == 3 and t <= now]
        assert row["updated_at"] == max([first_login, *changes]).strftime("%Y-%m-%d %H:%M:%S")
    assert statuses <= {"Online", "Offline", "Inactive"}


def last_reception(world: World, d: Device, at: datetime) -> datetime | None:
    """Ground truth: reception time of the latest fix (by GPS time) the platform had at `at`."""
    day = at.date()
    while day >= d.activation_date:
        points = world.day(d.imei, day).points.filter(
            (pl.col("received_at") <= at) & (pl.col("gps_time") <= at))
        if points.height:
            return points.sort("gps_time")["received_at"][-1]
        day -= timedelta(days=1)
    return None


def assert_seen(world: World, d: Device, now: datetime, row: dict[str, Any]) -> None:
    """seen_at = last reception; activity from its age (30 min Online, 7 days Offline)."""
    seen = last_reception(world, d, now)
    assert seen is not None
    assert row["seen_at"] == seen.strftime("%Y-%m-%d %H:%M:%S")
    age = now - seen
    expected = ("Online" if age <= timedelta(minutes=30)
                else "Offline" if age <= timedelta(days=7) else "Inactive")
    assert row["activity_status"] == expected


def test_devices_switched_off_go_offline_then_inactive(fota) -> None:
    """Seed 42: one Teltonika device is off 2026-10-20..27 (silent > 7 days by the 27th, found
    only by searching back past last_fix's week), another is off on the 26th (asserted below)."""
    world = fota.world
    statuses: dict[str, list[str]] = {}
    for when in (datetime(2026, 10, 26, 12, 0, 0), datetime(2026, 10, 27, 12, 0, 0)):
        fota.clock.set(when)
        rows = {r["imei"]: r for r in fota.ok("/devices", {"per_page": 100})["data"]}
        for d in fota_devices(world):
            if d.activation_date > when.date():   # a recent install: not connected yet then
                assert int(d.imei) not in rows
                continue
            assert_seen(world, d, when, rows[int(d.imei)])
            statuses.setdefault(rows[int(d.imei)]["activity_status"], []).append(d.imei)
    assert {"Online", "Offline", "Inactive"} <= set(statuses), statuses.keys()


def test_a_device_not_yet_connected_does_not_exist(fota) -> None:
    d = fota_devices(fota.world)[0]
    first_login = datetime.strptime(fota.ok(f"/devices/{d.imei}")["created_at"], "%Y-%m-%d %H:%M:%S")
    fota.clock.set(first_login - timedelta(seconds=1))
    assert_error(fota.get(f"/devices/{d.imei}"), 404)
    assert int(d.imei) not in [r["imei"] for r in fota.ok("/devices", {"per_page": 100})["data"]]
    fota.clock.set(first_login)
    row = fota.ok(f"/devices/{d.imei}")
    fix = fota.world.last_fix(d.imei, first_login)
    if fix is None:
        assert row["seen_at"] is None and row["activity_status"] == "Inactive"
    else:
        assert row["seen_at"] == fix["received_at"].strftime("%Y-%m-%d %H:%M:%S")


def test_firmware_follows_the_sandbox_clock(fota) -> None:
    """A device upgraded by an OTA attempt reports the old version before it, the new after."""
    world = fota.world
    for d in fota_devices(world):
        done = [(t, a.version) for a in world.ota_attempts(d.imei) for t, s in a.history if s == 3]
        if done:
            when, version = done[-1]
            break
    else:
        pytest.fail("no teltonika device has a succeeded OTA attempt")
    fota.clock.set(when - timedelta(seconds=1))
    before = fota.ok(f"/devices/{d.imei}")
    fota.clock.set(when)
    after = fota.ok(f"/devices/{d.imei}")
    assert after["current_firmware"] == version != before["current_firmware"]
    assert before["current_firmware"] == world.firmware_at(d.imei, when - timedelta(seconds=1))


def test_single_device_follows_the_spec(fota) -> None:
    d = fota_devices(fota.world)[0]
    row = fota.ok(f"/devices/{d.imei}")
    assert_spec("DeviceGetResponse", row)
    assert row["imei"] == int(d.imei)
    assert row["current_firmware"] == fota.world.firmware_at(d.imei, fota.clock())
    sent = [a for a in fota.world.ota_attempts(d.imei) if a.sent_at <= fota.clock()]
    assert row["task_count"] == len(sent)


def test_unknown_device_is_404_and_a_non_number_400(fota) -> None:
    jimi = next(d for d in fota.world.devices if d.firmware_platform is None)
    assert "not found" in assert_error(fota.get(f"/devices/{jimi.imei}"), 404)["message"].lower()
    assert_error(fota.get("/devices/123"), 404)
    assert "invalid" in assert_error(fota.get("/devices/35262569x"), 400)["message"]


def test_device_filters(fota) -> None:
    world, now = fota.world, fota.clock()
    devices = fota_devices(world)
    picked = [devices[0], devices[3], devices[5]]

    def imeis(params: Any) -> list[int]:
        page = fota.ok("/devices", params)
        assert_spec("DevicePagedResult", page)
        return [row["imei"] for row in page["data"]]

    want = sorted(int(d.imei) for d in picked)
    assert imeis([("imei", d.imei) for d in picked]) == want           # form/explode (the spec's)
    assert imeis([("imei[]", d.imei) for d in picked]) == want         # PHP-style brackets
    assert imeis({"imei": ",".join(d.imei for d in picked)}) == want
    group = navixy_group_ids(world)[devices[0].account_id]
    assert imeis({"group_id": group, "per_page": 100}) == [
        int(d.imei) for d in devices if navixy_group_ids(world)[d.account_id] == group]
    assert imeis({"model": "FMB920", "per_page": 100}) == [
        int(d.imei) for d in devices if d.model == "FMB920"]
    version = world.firmware_at(devices[0].imei, now)
    assert imeis({"current_firmware": version, "per_page": 100}) == [
        int(d.imei) for d in devices if world.firmware_at(d.imei, now) == version]
    assert imeis({"company_id": teltonika.COMPANY_ID + 1}) == []
    assert imeis({"query": devices[2].imei[-6:]}) == [int(devices[2].imei)]
    assert imeis({"query": devices[4].vehicle_number.lower()}) == [int(devices[4].imei)]
    # filters the sandbox does not support are ignored, as the real API ignores unknown ones
    assert len(imeis({"activity_status": 1, "query_field": "iccid", "per_page": 100})) == len(devices)


def test_device_sorting(fota) -> None:
    rows = fota.ok("/devices", {"sort": "seen_at", "order": "desc", "per_page": 100})["data"]
    seen = [r["seen_at"] for r in rows]
    assert seen == sorted(seen, reverse=True)
    rows = fota.ok("/devices", {"sort": "serial", "per_page": 100})["data"]
    assert [r["serial"] for r in rows] == sorted(r["serial"] for r in rows)
    assert_error(fota.get("/devices", {"sort": "password"}), 400)
    assert_error(fota.get("/devices", {"order": "up"}), 400)


def test_next_page_url_keeps_the_filters(fota) -> None:
    first = fota.ok("/devices", {"model": "FMB920", "per_page": 2})
    second = fota.ok(first["next_page_url"])
    query = parse_qs(urlsplit(first["next_page_url"]).query)
    assert query == {"model": ["FMB920"], "per_page": ["2"], "page": ["2"]}
    assert second["current_page"] == 2 and all(r["model"] == "FMB920" for r in second["data"])
    assert fota.ok(second["first_page_url"]) == first
    assert fota.ok(first["last_page_url"])["current_page"] == first["last_page"]


@pytest.mark.parametrize("params", [{"per_page": 101}, {"per_page": 0}, {"per_page": "ten"},
                                    {"page": 0}, {"page": -1}, {"imei": "abc"}])
def test_paging_and_filter_values_outside_the_spec_are_400(fota, params) -> None:
    body = assert_error(fota.get("/devices", params), 400)
    assert body["message"].startswith("The given data was invalid")


def test_per_page_100_is_the_maximum_and_25_the_default(fota) -> None:
    assert fota.ok("/devices", {"per_page": 100})["per_page"] == 100
    assert fota.ok("/devices")["per_page"] == 25
    assert fota.ok("/groups")["per_page"] == 25


# -- groups -----------------------------------------------------------------------------------
def test_groups_pages_and_single_group_follow_the_spec(fota) -> None:
    world = fota.world
    expected = navixy_group_ids(world)
    names = {a.account_id: a.name for a in world.accounts}
    found: dict[int, str] = {}
    page_no, last_page = 1, 1
    while page_no <= last_page:
        page = fota.ok("/groups", {"per_page": 2, "page": page_no})
        assert_spec("GroupPagedResult", page)
        last_page = page["last_page"]
        found.update({g["id"]: g["name"] for g in page["data"]})
        page_no += 1
    assert last_page == math.ceil(len(expected) / 2) > 1
    assert found == {gid: names[account] for account, gid in expected.items()}
    gid = min(found)
    group = fota.ok(f"/groups/{gid}")
    assert_spec("Group", group)
    assert group["id"] == gid and group["company"]["name"] == "FleetCo SAS"
    assert_error(fota.get(f"/groups/{max(found) + 1}"), 404)
    assert_error(fota.get("/groups/abc"), 400)
    assert fota.ok("/groups", {"query": found[gid]})["data"][0]["id"] == gid
    assert fota.ok("/groups", {"company_id": 1})["data"] == []


# -- background actions -----------------------------------------------------------------------
def test_background_actions_follow_the_spec(fota) -> None:
    now = fota.clock()
    actions = fota.server.app.background_actions()
    campaigns = [c for c in fota.world.campaigns
                 if c.platform == "teltonika_fota" and c.start_day <= now.date()]
    visible = [a for a in actions.values() if a.created_at <= now]
    assert sum(a.type == "TaskBulkCreate" for a in visible) == len(campaigns) > 0
    for action in visible:
        body = fota.ok(f"/backgroundActions/{action.id}")
        assert_spec("BackgroundActionGetResponse", body)
        assert body["id"] == action.id and body["status"] == "Completed"
    future = [a for a in actions.values() if a.created_at > now]
    assert future, "the December export is after the fixed clock"
    assert_error(fota.get(f"/backgroundActions/{future[0].id}"), 404)
    assert_error(fota.get("/backgroundActions/00000000-0000-4000-8000-000000000000"), 404)
    assert_error(fota.get("/backgroundActions/not-a-uuid"), 400)


# -- tasks and batches ------------------------------------------------------------------------
# The World's OTA statuses as FOTA task status ids, as the module documents them: sent -> Pending,
# downloading -> Running, succeeded -> Completed, failed and command-failed -> Failed.
TASK_STATUS_OF = {1: 0, 2: 1, 3: 2, 4: 5, -1: 5}


def all_rows(fota: FotaSandbox, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows, page = [], 1
    while True:
        body = fota.ok(path, {**(params or {}), "per_page": 100, "page": page})
        rows += body["data"]
        if page >= body["last_page"]:
            return rows
        page += 1


def world_attempts(world: World, now: datetime) -> dict[tuple[str, str], Any]:
    """(imei, sent time as FOTA writes it) -> the World's attempt, for every attempt sent by now."""
    return {(d.imei, a.sent_at.strftime("%Y-%m-%d %H:%M:%S")): a
            for d in fota_devices(world) for a in world.ota_attempts(d.imei) if a.sent_at <= now}


def _fmt(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def test_task_pages_follow_the_spec_and_are_the_worlds_attempts(fota) -> None:
    now = fota.clock()
    expected = world_attempts(fota.world, now)
    assert expected, "the World has OTA attempts of Teltonika devices before its clock"
    first = fota.get("/tasks", {"per_page": 7})
    assert first.status_code == 200
    assert len(re.findall(r'"device_imei":\d{15}[,}]', first.text)) == len(first.json()["data"]) == 7
    for n in (1, 2, math.ceil(len(expected) / 7) + 1):
        page = fota.ok("/tasks", {"per_page": 7, "page": n})
        assert_spec("TaskPagedResult", page)
        assert page["total"] == len(expected)
    rows = all_rows(fota, "/tasks")
    assert [r["id"] for r in rows] == sorted({r["id"] for r in rows}), "ids unique and ascending"
    found = {(str(r["device_imei"]).zfill(15), r["created_at"]): r for r in rows}
    assert set(found) == set(expected)
    batch_of: dict[str, set[int]] = {}
    for key, row in found.items():
        attempt = expected[key]
        status_id = TASK_STATUS_OF[attempt.status_at(now)]
        assert row["type"] == "TxFirmware"
        assert (row["status_id"], row["status_changed_at"]) == (status_id, _fmt(attempt.last_update_at(now)))
        assert row["status_name"].endswith(f"= {status_id}")
        assert attempt.version in row["file"]["name"] and row["device"]["model"] in row["file"]["name"]
        batch_of.setdefault(attempt.campaign_id, set()).add(row["batch_id"])
    assert all(len(ids) == 1 for ids in batch_of.values()), "one batch per campaign"
    assert len({next(iter(ids)) for ids in batch_of.values()}) == len(batch_of)
    seen = Counter(r["status_id"] for r in rows)
    assert seen[2] > 0 and seen[5] > 0, "completed and failed tasks both exist"


def test_tasks_follow_the_sandbox_clock(fota) -> None:
    # Halfway through the most recent campaign's scheduling: fewer tasks, several still open.
    campaign = max((c for c in fota.world.campaigns if c.platform == "teltonika_fota"
                    and c.start_day < fota.clock().date()), key=lambda c: c.start_day)
    fota.clock.set(datetime.combine(campaign.start_day, datetime.min.time()) + timedelta(days=7, hours=12))
    now = fota.clock()
    expected = world_attempts(fota.world, now)
    rows = all_rows(fota, "/tasks")
    assert {(str(r["device_imei"]).zfill(15), r["created_at"]): r["status_id"] for r in rows} == {
        key: TASK_STATUS_OF[a.status_at(now)] for key, a in expected.items()}


def test_single_task_and_task_filters(fota) -> None:
    rows = all_rows(fota, "/tasks")
    task = rows[len(rows) // 2]
    body = fota.ok(f"/tasks/{task['id']}")
    assert_spec("TaskGetResponse", body)
    assert {k: v for k, v in task.items() if k != "device"} == body
    assert_error(fota.get(f"/tasks/{task['id'] + 1}"), 404)
    assert_error(fota.get("/tasks/abc"), 400)
    completed = all_rows(fota, "/tasks", {"status_id": 2})
    assert completed and {r["id"] for r in completed} == {r["id"] for r in rows if r["status_id"] == 2}
    mine = all_rows(fota, "/tasks", {"device_imei": task["device_imei"]})
    assert {r["id"] for r in mine} == {r["id"] for r in rows if r["device_imei"] == task["device_imei"]}
    batch = all_rows(fota, "/tasks", {"batch_id": task["batch_id"]})
    assert {r["id"] for r in batch} == {r["id"] for r in rows if r["batch_id"] == task["batch_id"]}
    assert fota.ok("/tasks", {"type": "TxConfiguration"})["data"] == []
    latest = fota.ok("/tasks", {"sort": "status_changed_at", "order": "desc", "per_page": 100})["data"]
    changed = [r["status_changed_at"] for r in latest]
    assert changed == sorted(changed, reverse=True) and changed[0] == max(r["status_changed_at"] for r in rows)
    assert_error(fota.get("/tasks", {"per_page": 101}), 400)


def test_batches_are_the_worlds_campaigns_with_their_tasks_per_status(fota) -> None:
    now = fota.clock()
    attempts = world_attempts(fota.world, now).values()
    page = fota.ok("/batches")
    assert_spec("BatchPagedResult", page)
    batches = {b["task_file_name"]: b for b in page["data"]}
    # a rollout's batch is created early on its start day (04:00-06:00), before its first command
    started = [c for c in fota.world.campaigns if c.platform == "teltonika_fota"
               and datetime.combine(c.start_day, datetime.min.time()) + timedelta(hours=4) <= now]
    campaigns = [c for c in started if datetime.combine(c.start_day, datetime.min.time()) + timedelta(hours=6) <= now]
    assert len(campaigns) <= len(batches) <= len(started) and campaigns
    for campaign in campaigns:
        batch = next(b for name, b in batches.items() if campaign.target_version in name and campaign.model in name)
        mine = [a for a in attempts if a.campaign_id == campaign.campaign_id]
        per_status = Counter(TASK_STATUS_OF[a.status_at(now)] for a in mine)
        assert batch["objects"] == len(mine)
        assert {s["status_id"]: s["count"] for s in batch["task_stats"]} == dict(per_status)
        assert batch["objects_processed"] == sum(n for s, n in per_status.items() if s in (2, 5))
        single = fota.ok(f"/batches/{batch['id']}")
        assert_spec("Batch", single)
        assert single == batch
    assert_error(fota.get(f"/batches/{max(b['id'] for b in batches.values()) + 1}"), 404)
    assert fota.ok("/batches", {"task_type": "TxConfiguration"})["data"] == []


# -- auth and headers -------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_a_missing_or_wrong_token_is_401(fota, token) -> None:
    response = fota.get("/devices", token=token)
    assert assert_error(response, 401)["message"] == "Unauthenticated."
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_token_must_be_a_bearer_token(fota) -> None:
    assert_error(fota.get("/devices", token=None,
                          headers={"Authorization": teltonika.API_TOKEN}), 401)
    assert_error(fota.get("/devices", token=None,
                          headers={"Authorization": f"Basic {teltonika.API_TOKEN}"}), 401)
    fota.ok("/devices", token=None, headers={"Authorization": f"bearer {teltonika.API_TOKEN}"})


@pytest.mark.parametrize("agent", [None, "", "python-requests/2.32.3", "python-urllib3/2.5.0",
                                   "curl/8.5.0", "Go-http-client/1.1", "okhttp/4.12.0",
                                   "fleet_pipeline"])
def test_a_generic_or_versionless_user_agent_is_403(fota, agent) -> None:
    # agent=None drops requests' own agent, and urllib3 then sends python-urllib3/<version>
    assert "User-Agent" in assert_error(fota.get("/devices", agent=agent), 403)["message"]


def test_a_request_without_any_user_agent_is_403(fota) -> None:
    connection = http.client.HTTPConnection(fota.server.host, fota.server.port, timeout=30)
    try:
        # http.client adds Host and Accept-Encoding, never a User-Agent
        connection.request("GET", "/devices", headers={
            "Authorization": f"Bearer {teltonika.API_TOKEN}", "Accept": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 403 and "User-Agent" in body["message"]
    assert_spec("ResponseMessage", body)


@pytest.mark.parametrize("agent", ["FleetCo/fleet_pipeline/0.1.0",
                                   "fleet_pipeline/0.1.0 (+data-platform)",
                                   "localiztoi/stock-app/0.1"])
def test_an_agent_naming_application_and_version_is_accepted(fota, agent) -> None:
    fota.ok("/groups", agent=agent)


def test_accept_must_allow_json(fota) -> None:
    assert_error(fota.get("/devices", headers={"Accept": "text/html"}), 406)
    fota.ok("/devices", headers={"Accept": "*/*"})


def test_unknown_paths_and_verbs_answer_json(fota) -> None:
    assert_error(fota.get("/companies"), 404)
    response = fota.get("/devices", method="POST")
    assert_error(response, 405)
    assert response.headers["Allow"] == "GET"


# -- throttling -------------------------------------------------------------------------------
def test_the_101st_request_in_a_minute_is_429(fota) -> None:
    for _ in range(100):
        fota.ok("/groups/31001")
        fota.rate_clock.t += 0.5                      # 100 requests over 50 s
    response = fota.get("/groups/31001")
    assert_error(response, 429)
    assert "Retry-After" not in response.headers      # the default: header unconfirmed, not sent
    assert_error(fota.get("/groups/31001"), 429)      # refused requests do not count ...
    fota.rate_clock.t += 10.0                         # ... so 60 s after the first, one frees
    fota.ok("/groups/31001")
    assert_error(fota.get("/groups/31001"), 429)
    assert fota.server.count(status=429) == 3 and fota.server.count(status=200) == 101


def test_retry_after_says_when_a_slot_frees(fota) -> None:
    fota.knobs.set(retry_after_header=True, rate_limit_calls=3)
    for _ in range(3):
        fota.ok("/groups/31001")
        fota.rate_clock.t += 4.0
    response = fota.get("/groups/31001")
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "48"    # first stamp + 60 - now = 60 - 12
    fota.rate_clock.t += 48.0
    fota.ok("/groups/31001")


def test_the_window_is_per_token(fota) -> None:
    fota.knobs.set(rate_limit_calls=2)
    fota.ok("/groups/31001")
    fota.ok("/groups/31001")
    assert_error(fota.get("/groups/31001"), 429)
    assert_error(fota.get("/groups/31001", token="another-token"), 401)   # its own window: not 429


def test_forced_429_with_and_without_retry_after(fota) -> None:
    fota.knobs.set(force_429_next=1)
    response = fota.get("/devices")
    assert_error(response, 429)
    assert "Retry-After" not in response.headers
    fota.knobs.set(force_429_next=1, retry_after_header=True, forced_retry_after_s=7)
    response = fota.get("/devices")
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "7"
    fota.ok("/devices")
    assert fota.server.count("GET /devices", status=429) == 2


def test_user_agent_rule() -> None:
    assert teltonika.is_acceptable_user_agent("fleet_pipeline/0.1.0 (+data-platform)")
    assert not teltonika.is_acceptable_user_agent("Mozilla/5.0 (X11; Linux x86_64)")
    assert not teltonika.is_acceptable_user_agent("   ")
