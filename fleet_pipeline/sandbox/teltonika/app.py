"""The FOTA sandbox app: knobs, routing of a request to its route, and `make_server`."""

from __future__ import annotations

import re
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
from fleet_pipeline.sandbox.teltonika.access import AccessControl
from fleet_pipeline.sandbox.teltonika.endpoints import Endpoints
from fleet_pipeline.sandbox.teltonika.identities import (
    FIRMWARE_PLATFORM,
    GROUP_ID_BASE,
    VENDOR,
    BackgroundAction,
    group_accounts,
)
from fleet_pipeline.sandbox.teltonika.protocol import ApiError, message_answer, parse_query
from fleet_pipeline.sandbox.teltonika.synthesis import TeltonikaRows

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import World


@dataclass
class TeltonikaKnobs(FaultKnobs):
    """Generic faults plus the FOTA API's throttling (see SPEC.md)."""

    rate_limit_calls: int = 100
    rate_limit_window_s: float = 60.0
    retry_after_header: bool = False   # docs/vendor-apis/FIELD-NOTES.md: unconfirmed whether the real 429 sends it
    force_429_next: int = 0
    forced_retry_after_s: int = 20


@dataclass(frozen=True)
class _Route:
    method: str                                   # for the request log, e.g. "GET /devices"
    handler: Callable[..., Response]
    pattern: re.Pattern[str]


class TeltonikaApp(AccessControl, Endpoints, TeltonikaRows):
    """The FOTA WEB API over one World (SPEC.md states every rule)."""

    vendor = VENDOR

    def __init__(self, world: World, knobs: TeltonikaKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._devices = {int(d.imei): d for d in world.devices
                         if d.firmware_platform == FIRMWARE_PLATFORM}
        self._groups = {GROUP_ID_BASE + n: a for n, a in enumerate(group_accounts(world), start=1)}
        self._group_of_account = {a.account_id: gid for gid, a in self._groups.items()}
        self._actions: dict[str, BackgroundAction] | None = None
        self._routes = (
            _Route("GET /devices", TeltonikaApp._devices_page, re.compile(r"/devices/?")),
            _Route("GET /devices/{deviceImei}", TeltonikaApp._device,
                   re.compile(r"/devices/(?P<key>[^/]+)/?")),
            _Route("GET /groups", TeltonikaApp._groups_page, re.compile(r"/groups/?")),
            _Route("GET /groups/{groupId}", TeltonikaApp._group,
                   re.compile(r"/groups/(?P<key>[^/]+)/?")),
            _Route("GET /backgroundActions/{backgroundActionId}", TeltonikaApp._action,
                   re.compile(r"/backgroundActions/(?P<key>[^/]+)/?")),
            _Route("GET /tasks", TeltonikaApp._tasks_page, re.compile(r"/tasks/?")),
            _Route("GET /tasks/{taskId}", TeltonikaApp._task, re.compile(r"/tasks/(?P<key>[^/]+)/?")),
            _Route("GET /batches", TeltonikaApp._batches_page, re.compile(r"/batches/?")),
            _Route("GET /batches/{batchId}", TeltonikaApp._batch,
                   re.compile(r"/batches/(?P<key>[^/]+)/?")),
        )

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        found = self._route(request.path)
        return found[0].method if found else None

    def handle(self, request: Request) -> Response:
        found = self._route(request.path)
        if found is None:
            return message_answer(404, "Not found.", None)
        route, key = found
        try:
            if request.http_method != "GET":
                raise ApiError(405, f"The {request.http_method} method is not supported for "
                                     "this route. Supported methods: GET.", {"Allow": "GET"})
            self._check_headers(request)
            query = parse_query(request.query)
            return route.handler(self, request, query, key, route.method)
        except ApiError as exc:
            return message_answer(exc.status, exc.message, route.method, exc.headers)

    # -- routing and headers -----------------------------------------------------------------
    def _route(self, path: str) -> tuple[_Route, str | None] | None:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match:
                return route, match.groupdict().get("key")
        return None


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: TeltonikaKnobs | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                **knob_values: Any) -> SandboxServer[TeltonikaKnobs]:
    """A bound, not yet started FOTA WEB API sandbox over `world` (start() or use `with`).

    Paths are at the root of `base_url`. `now` overrides the sandbox clock (default
    `world.now`); `rate_clock` drives the 100-per-minute window; extra keyword arguments set
    `TeltonikaKnobs` fields.
    """
    knobs = knobs if knobs is not None else TeltonikaKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = TeltonikaApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)
