"""The Navixy sandbox app: knobs, dispatch of a request to its endpoint, and `make_server`."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.faults import FaultKnobs
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.navixy.access import AccessControl
from fleet_pipeline.sandbox.navixy.endpoints import AccountEndpoints
from fleet_pipeline.sandbox.navixy.faults import corrupt_rows, garble_first_row
from fleet_pipeline.sandbox.navixy.protocol import (
    API_PREFIX,
    PASSWORD,
    Call,
    NavixyError,
    Params,
    drop_nulls,
    error_response,
    iso_mode,
    request_values,
)
from fleet_pipeline.sandbox.navixy.synthesis import (
    GROUP_ID_BASE,
    PLATFORM,
    NavixyRows,
    default_blocked_tracker_ids,
    default_deleted_tracker_ids,
)
from fleet_pipeline.sandbox.navixy.track_endpoints import TrackEndpoints
from fleet_pipeline.sandbox.server import SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import World


@dataclass
class NavixyKnobs(FaultKnobs):
    """Generic faults plus the Navixy behaviour tests need to provoke (see SPEC.md)."""

    session_lifetime_s: int = 86_400
    # The first n sessions this server issued have ended (an administrator ended them), whatever
    # their age: a mid-run expiry that does not hang on which second a hash was issued in.
    end_first_sessions: int = 0
    force_429_next: int = 0
    rate_limit_per_s: int = 50
    rate_limit_window_s: float = 1.0
    storage_period_days: int = 400
    # None until the app fills them from its World (seeded, deterministic defaults).
    blocked_tracker_ids: set[int] | None = None
    deleted_tracker_ids: set[int] | None = None
    corrupt_rows_next: int = 0
    garble_first_row: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeat_first_row: set[str] = field(default_factory=set)
    # Which tracker's answer those two wait for (None: the next answer of any tracker). A client
    # fanning out over trackers reads them in no fixed order, so a test that needs the damaged row
    # to be one the client keeps names a tracker whose rows it knows from the World.
    first_row_tracker_id: int | None = None
    simplify_tolerance_m: float = 25.0
    max_states_trackers: int = 2000
    max_track_span_days: int = 30
    max_history_span_days: int = 90
    max_history_limit: int = 1000
    max_stats_trackers: int = 128
    max_stats_span_days: int = 31


@dataclass(frozen=True)
class _Route:
    handler: Callable[[NavixyApp, Call], dict[str, Any]]
    needs_auth: bool = True


class NavixyApp(AccessControl, AccountEndpoints, TrackEndpoints, NavixyRows):
    """The Navixy protocol over one World (SPEC.md states every rule)."""

    vendor = "navixy"

    def __init__(self, world: World, knobs: NavixyKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._session_key = hmac.new(PASSWORD.encode("utf-8"), b"navixy-sandbox-session-v1",
                                     hashlib.sha256).digest()
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._logged_out: set[str] = set()
        self._issued: list[str] = []
        self._accounts = [a for a in world.accounts if a.platform == PLATFORM]
        self._groups = {a.account_id: GROUP_ID_BASE + n + 1 for n, a in enumerate(self._accounts)}
        # Each page of history/tracker/list needs every event of its batch's tracker-days; built
        # once, not once per page (a batch of 500 trackers pages 5 or more times a day).
        self._events_of_day = lru_cache(maxsize=max(4096, 3 * world.n_devices))(self._build_day_events)
        if knobs.blocked_tracker_ids is None:
            knobs.set(blocked_tracker_ids=default_blocked_tracker_ids(world))
        if knobs.deleted_tracker_ids is None:
            knobs.set(deleted_tracker_ids=default_deleted_tracker_ids(world))

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        return request.path[len(API_PREFIX) + 1:].strip("/") or None

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(API_PREFIX + "/"):
            return Response.html(404, "Not Found", "The requested resource is not available")
        method = self.vendor_method(request) or ""
        try:
            if request.http_method not in ("GET", "POST"):
                raise NavixyError(112)
            route = _ROUTES.get(method)
            if route is None:
                raise NavixyError(111)
            values = request_values(request)
            iso = iso_mode(request, values)
            call = Call(method=method, params=Params(values, iso), iso=iso)
            if route.needs_auth:
                call = self._authenticate(request, values, call)
            payload = route.handler(self, call)
            if self.knobs.corrupt_rows_next and method in _ROW_METHODS:
                corrupt_rows(method, payload, self.knobs)
            if self.knobs.garble_first_row or self.knobs.repeat_first_row:
                garble_first_row(method, payload, self.knobs, values.get("tracker_id"))
        except NavixyError as exc:
            return error_response(method, exc)
        return Response.json(drop_nulls({"success": True, **payload}), vendor_method=method)


_ROUTES: dict[str, _Route] = {
    "user/auth": _Route(NavixyApp.user_auth, needs_auth=False),
    "user/logout": _Route(NavixyApp.user_logout),
    "user/get_info": _Route(NavixyApp.user_get_info),
    "user/settings/read": _Route(NavixyApp.user_settings_read),
    "tracker/list": _Route(NavixyApp.tracker_list),
    "tracker/read": _Route(NavixyApp.tracker_read),
    "tracker/group/list": _Route(NavixyApp.tracker_group_list),
    "tracker/get_state": _Route(NavixyApp.tracker_get_state),
    "tracker/get_states": _Route(NavixyApp.tracker_get_states),
    "tracker/get_last_gps_point": _Route(NavixyApp.tracker_get_last_gps_point),
    "tracker/get_diagnostics": _Route(NavixyApp.tracker_get_diagnostics),
    "tracker/get_fuel": _Route(NavixyApp.tracker_get_fuel),
    "tracker/get_readings": _Route(NavixyApp.tracker_get_readings),
    "track/list": _Route(NavixyApp.track_list),
    "track/read": _Route(NavixyApp.track_read),
    "history/tracker/list": _Route(NavixyApp.history_tracker_list),
    "tracker/stats/mileage/read": _Route(NavixyApp.tracker_stats_mileage_read),
}

# Methods whose rows are devices, positions or events (what corrupt_rows_next damages).
_ROW_METHODS = frozenset({"tracker/list", "track/read", "tracker/get_last_gps_point",
                          "tracker/get_state", "tracker/get_states", "history/tracker/list"})


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: NavixyKnobs | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                **knob_values: Any) -> SandboxServer[NavixyKnobs]:
    """A bound, not yet started Navixy sandbox over `world` (start() or use `with`).

    The API lives under `base_url + API_PREFIX`. `now` overrides the sandbox clock (default
    `world.now`); `rate_clock` drives the 50/s window; extra keyword arguments set knobs.
    """
    knobs = knobs if knobs is not None else NavixyKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = NavixyApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)
