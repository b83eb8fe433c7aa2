"""The Tracksolid sandbox app: knobs, dispatch of a request to its method, and `make_server`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.faults import FaultKnobs
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.server import SandboxServer
from fleet_pipeline.sandbox.tracksolid.access import AccessControl
from fleet_pipeline.sandbox.tracksolid.endpoints import DataEndpoints
from fleet_pipeline.sandbox.tracksolid.faults import EVENT_METHODS, corrupt_rows
from fleet_pipeline.sandbox.tracksolid.protocol import (
    ALARM_LIST,
    ALARM_ROWS_REACHABLE,
    APP_SECRET,
    PLATFORM,
    ROUTE_PATH,
    TOKEN_GET,
    TOKEN_REFRESH,
    Call,
    JimiError,
    TokenCodec,
    error,
)
from fleet_pipeline.sandbox.tracksolid.synthesis import TracksolidRows

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import World


@dataclass
class TracksolidKnobs(FaultKnobs):
    """Generic faults plus the Tracksolid-specific behaviour tests need to provoke."""

    token_lifetime_s: int | None = None                 # overrides expires_in of new tokens
    revoke_tokens_issued_before: datetime | None = None  # sandbox-clock time; older tokens -> 1004
    force_1006_next: int = 0                            # next N calls (not token.get) -> 1006
    rate_limit_calls: int = 25                          # accepted calls per window per app_key
    rate_limit_window_s: float = 1.0
    token_get_interval_s: int = 60                      # token.get: one success per interval
    mileage_unit: str = "km"                            # "km" | "m": unit of track.mileage distance
    corrupt_rows_next: int = 0                          # next N data rows served carry a defect
    # Rows of one alarm.list query that paging can reach; lower it to test window splitting
    # without generating a thousand alarms.
    alarm_rows_reachable: int = ALARM_ROWS_REACHABLE


@dataclass(frozen=True)
class _MethodSpec:
    handler: Callable[[TracksolidApp, Call], dict[str, Any]]
    required: tuple[str, ...]
    needs_token: bool = True


class TracksolidApp(AccessControl, DataEndpoints, TracksolidRows):
    """The Tracksolid protocol over one World (SPEC.md states every rule)."""

    vendor = "tracksolid"

    def __init__(self, world: World, knobs: TracksolidKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._codec = TokenCodec(APP_SECRET)
        self._accounts = {a.account_id: a for a in world.accounts if a.platform == PLATFORM}
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._last_token_get: dict[tuple[str, str], datetime] = {}
        self._methods = _METHODS

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        pairs = request.form() if request.http_method == "POST" else None
        return dict(pairs).get("method") if pairs else None

    def handle(self, request: Request) -> Response:
        if request.http_method != "POST":
            return Response.html(405, "Method Not Allowed",
                                 f"Request method '{request.http_method}' not supported")
        if request.path != ROUTE_PATH:
            return Response.html(404, "Not Found", "The requested resource is not available")
        pairs = request.form()
        if pairs is None:
            return Response.html(200, "Bad Request",
                                 f"Content type '{request.content_type or 'none'}' not supported")
        method = dict(pairs).get("method")
        try:
            call = self._verify(pairs)
            spec = _METHODS[call.method]
            for name in spec.required:
                if not call.params.get(name):
                    raise JimiError(1001, f"missing required parameter: {name}")
            if spec.needs_token:
                call = self._authenticate(call)
            payload = spec.handler(self, call)
            if self.knobs.corrupt_rows_next and call.method in EVENT_METHODS:
                corrupt_rows(payload, self.knobs)
        except JimiError as exc:
            return error(method, exc.code, exc.message)
        return Response.json(payload, vendor_method=method, vendor_code=payload["code"])


_METHODS: dict[str, _MethodSpec] = {
    TOKEN_GET: _MethodSpec(TracksolidApp.token_get, ("user_id", "user_pwd_md5", "expires_in"),
                           needs_token=False),
    TOKEN_REFRESH: _MethodSpec(TracksolidApp.token_refresh,
                               ("access_token", "refresh_token", "expires_in"), needs_token=False),
    "jimi.user.child.list": _MethodSpec(TracksolidApp.child_list, ("target",)),
    "jimi.user.device.list": _MethodSpec(TracksolidApp.device_list, ("target",)),
    "jimi.track.device.detail": _MethodSpec(TracksolidApp.device_detail, ("imei",)),
    "jimi.user.device.location.list": _MethodSpec(TracksolidApp.location_list, ("target",)),
    "jimi.device.location.get": _MethodSpec(TracksolidApp.location_get, ("imeis",)),
    "jimi.device.track.mileage": _MethodSpec(TracksolidApp.track_mileage,
                                             ("imeis", "begin_time", "end_time")),
    "jimi.device.track.list": _MethodSpec(TracksolidApp.track_list,
                                          ("imei", "begin_time", "end_time")),
    "jimi.open.platform.report.parking": _MethodSpec(
        TracksolidApp.parking,
        ("account", "imeis", "start_time", "end_time", "start_row", "page_size")),
    ALARM_LIST: _MethodSpec(TracksolidApp.alarm_list, ("imeis", "begin_time", "end_time")),
}


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                knobs: TracksolidKnobs | None = None,
                **knob_values: Any) -> SandboxServer[TracksolidKnobs]:
    """A bound, not yet started Tracksolid sandbox over `world` (start() or use `with`).

    `now` overrides the sandbox clock (default `world.now`); `rate_clock` drives the 1006
    frequency window; extra keyword arguments set `TracksolidKnobs` fields.
    """
    knobs = knobs if knobs is not None else TracksolidKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = TracksolidApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)
