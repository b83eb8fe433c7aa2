"""What the vendors allow: the fewest API calls one day can take, and the documented rate limits.

The minimum of each method follows from the batch and page limits of the vendor documents
(``docs/vendor-apis`` and docs/vendor-apis/FIELD-NOTES.md) applied to the fleet of the benchmark's world
and to the rows the day returned, e.g. Tracksolid ``track.mileage`` takes 50 IMEIs a call and
pages 100 trips, announcing no total, so a batch of R trips needs ``R // 100 + 1`` calls (a full
page takes one more to see the end); ``track.list`` takes one IMEI, so T calls. A method not
listed has no known minimum.

A batch endpoint pages each batch on its own, so its minimum is the sum over the batches the
client must make (50 IMEIs of the sorted fleet, per account for parking) of that batch's pages:
a batch of 50 IMEIs with 130 trips costs two calls whatever the rest of the fleet did. Paged
minima count the rows that were loaded per IMEI (``rows_per_imei``, read from the warehouse by
the stage), a slight under-count where the vendor sent rows the pipeline then dropped
(duplicates, rows outside the UTC day): the minimum can only be lower than the true one, never
hide excess calls.

Listing the fleet (Tracksolid's account tree, Navixy's tracker list and user time zone) is part
of every run: the snapshots job and the daily job are separate runs (``RUNS_PER_DAY``), and a
run does not trust a fleet list another run made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import ceil

from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx.client import IDS_PER_CALL as AOVX_IDS_PER_CALL
from fleet_pipeline.sources.navixy.limits import HISTORY_BATCH as NAVIXY_HISTORY_BATCH
from fleet_pipeline.sources.tracksolid.limits import MAX_IMEIS_PER_CALL, MAX_PAGE_SIZE

# The snapshots job and the daily job (``fleet_pipeline.automation.schedules``): what the benchmark runs.
RUNS_PER_DAY = 2

# Requests per second each vendor allows (documents and docs/vendor-apis/FIELD-NOTES.md); None = none documented.
VENDOR_RATE_LIMIT_PER_S: dict[str, float | None] = {
    "tracksolid": 25.0,         # 1006 "frequency too high" after a burst of ~25 calls
    "navixy": 50.0,             # 50 requests/s per user and per IP
    "teltonika": 100.0 / 60.0,  # ~100 requests a minute
    "aovx": None,               # nothing documented
    "telesto": 100.0 / 3600.0,  # 100 requests an hour per IP (then a 15-minute block)
}


@dataclass(frozen=True)
class Fleet:
    """The facts of the world the minima depend on."""

    tracksolid_devices: int
    tracksolid_accounts: int
    # The IMEIs in the order the client batches them: sorted, and sorted within each account.
    tracksolid_imeis: tuple[str, ...]
    tracksolid_imeis_by_account: tuple[tuple[str, ...], ...]
    navixy_trackers: int
    navixy_active: int
    # The IMEIs of the active (not blocked) trackers in the order the client batches them: by id.
    navixy_active_imeis: tuple[str, ...]
    teltonika_devices: int
    aovx_terminals: int

    @classmethod
    def of(cls, world: World) -> Fleet:
        tracksolid = world.devices_on("tracksolid")
        imeis_by_account: dict[str, list[str]] = {}
        for device in tracksolid:
            imeis_by_account.setdefault(device.account_id, []).append(device.imei)
        accounts = _account_tree(world, world.root_account("tracksolid").account_id) if tracksolid else []
        trackers = world.devices_on("navixy")
        blocked = sandbox_navixy.default_blocked_tracker_ids(world) if trackers else set()
        active = sorted((sandbox_navixy.tracker_id(d), d.imei) for d in trackers
                        if sandbox_navixy.tracker_id(d) not in blocked)
        return cls(
            tracksolid_devices=len(tracksolid),
            tracksolid_accounts=len(accounts),
            tracksolid_imeis=tuple(sorted(d.imei for d in tracksolid)),
            tracksolid_imeis_by_account=tuple(tuple(sorted(v)) for v in imeis_by_account.values()),
            navixy_trackers=len(trackers),
            navixy_active=len(trackers) - len(blocked),
            navixy_active_imeis=tuple(imei for _, imei in active),
            teltonika_devices=sum(1 for d in world.devices if d.firmware_platform == "teltonika_fota"),
            aovx_terminals=sum(1 for d in world.devices if d.firmware_platform == "aovx"),
        )


def _account_tree(world: World, root: str) -> list[str]:
    found, queue = [], [root]
    while queue:
        account = queue.pop()
        found.append(account)
        queue.extend(child.account_id for child in world.child_accounts(account))
    return found


def _pages(rows: int, per_page: int) -> int:
    return max(1, ceil(rows / per_page))


def _batched_pages(imeis: tuple[str, ...], rows_per_imei: Mapping[str, int], announces_total: bool,
                   batch: int = MAX_IMEIS_PER_CALL, page: int = MAX_PAGE_SIZE) -> int:
    """Calls of a batch endpoint: every batch of devices (Tracksolid: 50 IMEIs) pages its rows
    (100 at a time) on its own.

    A method whose answer announces the total (``report.parking``) stops at it; the others
    (Tracksolid's ``result`` lists, Navixy's history, which has no offset either) can only tell
    the end by a short page, so a full last page takes one more call."""
    def calls(rows: int) -> int:
        return _pages(rows, page) if announces_total else rows // page + 1

    return sum(calls(sum(rows_per_imei.get(imei, 0) for imei in imeis[i:i + batch]))
               for i in range(0, len(imeis), batch))


@dataclass(frozen=True)
class Rows:
    """What a day returned: rows per table (``schema.table``) and, for paged tables, per IMEI."""

    per_table: Mapping[str, int]
    per_imei: Mapping[str, Mapping[str, int]]

    def get(self, table: str, default: int = 0) -> int:
        return self.per_table.get(table, default)

    def of_imeis(self, table: str) -> Mapping[str, int]:
        return self.per_imei.get(table, {})


# The tables whose rows per IMEI decide a minimum (read from the warehouse by the stage), and the
# filtered row sets that do: Navixy's points of a trip (parking false) decide who track/list asks.
PAGED_PER_IMEI = ("raw_tracksolid.trips", "raw_tracksolid.parking", "raw_tracksolid.alarms", "raw_navixy.events")
NAVIXY_TRIP_POINTS = "raw_navixy.track_points where not parking"
FILTERED_PER_IMEI = {NAVIXY_TRIP_POINTS: ("raw_navixy.track_points", "NOT coalesce(parking, false)")}

# method -> minimum calls, from the fleet and the rows of the day.
Rule = Callable[[Fleet, Rows], int]
MINIMUM_CALLS: dict[str, dict[str, Rule]] = {
    "tracksolid": {
        "jimi.oauth.token.get": lambda f, r: 1,
        # The device list is not recursive: one child.list and one device.list per account and run.
        "jimi.user.child.list": lambda f, r: f.tracksolid_accounts * RUNS_PER_DAY,
        "jimi.user.device.list": lambda f, r: f.tracksolid_accounts * RUNS_PER_DAY,
        "jimi.track.device.detail": lambda f, r: f.tracksolid_devices,              # one IMEI a call
        "jimi.user.device.location.list": lambda f, r: f.tracksolid_accounts,       # per account
        "jimi.device.track.mileage": lambda f, r: _batched_pages(f.tracksolid_imeis,
                                                                 r.of_imeis("raw_tracksolid.trips"), False),
        "jimi.device.track.list": lambda f, r: f.tracksolid_devices,                # one IMEI, <= 7 days
        "jimi.open.platform.report.parking": lambda f, r: sum(
            _batched_pages(imeis, r.of_imeis("raw_tracksolid.parking"), True) for imeis in f.tracksolid_imeis_by_account),
        "jimi.device.alarm.list": lambda f, r: _batched_pages(f.tracksolid_imeis, r.of_imeis("raw_tracksolid.alarms"),
                                                              False),
    },
    "navixy": {
        "user/get_info": lambda f, r: RUNS_PER_DAY,                               # the user's time zone
        "tracker/list": lambda f, r: RUNS_PER_DAY,
        "tracker/get_states": lambda f, r: ceil(f.navixy_trackers / 2000),
        "tracker/get_diagnostics": lambda f, r: f.navixy_active,                  # one tracker a call
        "tracker/get_fuel": lambda f, r: f.navixy_active,
        "tracker/get_readings": lambda f, r: f.navixy_active,
        # Only trackers with a point of a trip in the day (sources/navixy/trip_evidence.py).
        "track/list": lambda f, r: sum(1 for imei in f.navixy_active_imeis if r.of_imeis(NAVIXY_TRIP_POINTS).get(imei)),
        "track/read": lambda f, r: f.navixy_active,
        # 500 trackers a call, 1,000 events a page.
        "history/tracker/list": lambda f, r: _batched_pages(f.navixy_active_imeis, r.of_imeis("raw_navixy.events"),
                                                            False, batch=NAVIXY_HISTORY_BATCH, page=1000),
        "tracker/stats/mileage/read": lambda f, r: ceil(f.navixy_active / 128),
    },
    "teltonika": {
        "GET /devices": lambda f, r: _pages(f.teltonika_devices, 100),
        "GET /groups": lambda f, r: _pages(r.get("raw_teltonika.groups", 0), 100),
        "GET /tasks": lambda f, r: _pages(r.get("raw_teltonika.tasks", 0), 100),
        "GET /batches": lambda f, r: _pages(r.get("raw_teltonika.batches", 0), 100),
    },
    "aovx": {
        # ids has no documented limit: the client sends IDS_PER_CALL a query; pages of 100 rows.
        "queryTerminalOtaReport": lambda f, r: max(ceil(f.aovx_terminals / AOVX_IDS_PER_CALL),
                                                   _pages(r.get("raw_aovx.ota_reports", 0), 100)),
        # The sandbox-only terminal list (live mode configures the ids): pages of 100.
        "terminal/list": lambda f, r: _pages(f.aovx_terminals, 100),
    },
    "telesto": {
        "GET /v2/products": lambda f, r: 1,
    },
}


def minimum_calls(vendor: str, method: str, fleet: Fleet, rows: Rows) -> int | None:
    rule = MINIMUM_CALLS.get(vendor, {}).get(method)
    return None if rule is None else rule(fleet, rows)
