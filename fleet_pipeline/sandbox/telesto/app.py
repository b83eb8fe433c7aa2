"""The Telesto sandbox app: knobs, the hourly rate limit and its block, the products route, and
`make_server`."""

from __future__ import annotations

import hmac
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.faults import FaultKnobs
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.server import SandboxServer
from fleet_pipeline.sandbox.telesto.protocol import API_KEY, API_PREFIX, PRODUCTS_PATH, error_answer
from fleet_pipeline.sandbox.telesto.synthesis import product_row

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import World


@dataclass
class TelestoKnobs(FaultKnobs):
    """Generic faults plus the Telesto behaviour tests need to provoke (see SPEC.md)."""

    force_500_next: int = 0             # next N requests answer 500 SERVER_ERROR (JSON body)
    force_429_next: int = 0             # next N requests answer 429 without starting a block
    no_pro_subscription: bool = False   # every authenticated request answers 403 FORBIDDEN
    rate_limit_per_hour: int = 100
    rate_window_s: float = 3600.0
    block_s: float = 900.0
    retry_after_header: bool = False    # add Retry-After (seconds left in the block) to 429s


class TelestoApp:
    """The Telesto protocol over one World (SPEC.md states every rule)."""

    vendor = "telesto"

    def __init__(self, world: World, knobs: TelestoKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], datetime] | None = None) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self.rate_clock: Callable[[], datetime] = rate_clock if rate_clock is not None else self.now
        self._lock = threading.Lock()
        self._windows: dict[str, deque[datetime]] = {}
        self._blocked_until: dict[str, datetime] = {}

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        return f"{request.http_method} {request.path}"

    def throttle(self, request: Request) -> Response | None:
        """100 requests per sliding hour per client IP; the 101st blocks the IP for 15 minutes."""
        method = self.vendor_method(request)
        if self.knobs.consume("force_429_next"):
            return error_answer("TOO_MANY_REQUESTS", method)
        ip = request.client_ip
        with self._lock:
            t = self.rate_clock()
            until = self._blocked_until.get(ip)
            if until is not None and t < until:
                return self._blocked(method, until - t)
            if until is not None:
                # The timeout is over: a fresh window (see SPEC.md).
                del self._blocked_until[ip]
                self._windows.pop(ip, None)
            stamps = self._windows.setdefault(ip, deque())
            window = timedelta(seconds=self.knobs.rate_window_s)
            while stamps and stamps[0] <= t - window:
                stamps.popleft()
            if len(stamps) >= self.knobs.rate_limit_per_hour:
                block = timedelta(seconds=self.knobs.block_s)
                self._blocked_until[ip] = t + block
                return self._blocked(method, block)
            stamps.append(t)
        return None

    def _blocked(self, method: str | None, left: timedelta) -> Response:
        headers = None
        if self.knobs.retry_after_header:
            headers = {"Retry-After": str(max(1, math.ceil(left.total_seconds())))}
        return error_answer("TOO_MANY_REQUESTS", method, headers=headers)

    def handle(self, request: Request) -> Response:
        method = self.vendor_method(request)
        if self.knobs.consume("force_500_next"):
            return error_answer("SERVER_ERROR", method)
        if not request.path.startswith(API_PREFIX + "/"):
            return error_answer("NOT_FOUND", method)
        presented = request.header("Authorization").strip()
        # Exactly the key: "Bearer <key>" is a different (invalid) key, as the doc's example shows.
        if not presented or not hmac.compare_digest(presented.encode("utf-8"),
                                                    API_KEY.encode("utf-8")):
            return error_answer("UNAUTHORIZED", method)
        if self.knobs.no_pro_subscription:
            return error_answer("FORBIDDEN", method)
        if request.http_method != "GET" or request.path.rstrip("/") != PRODUCTS_PATH:
            return error_answer("NOT_FOUND", method)
        return Response.json(self.product_rows(), vendor_method=method)

    # -- data --------------------------------------------------------------------------------
    def product_rows(self) -> list[dict[str, str]]:
        """Every product created by now, as the vendor sends it (strings only)."""
        now = self.now()
        today = now.date()
        products = sorted((p for p in self.world.products if p.created <= now),
                          key=lambda p: (p.created, p.product_id))
        return [product_row(p, self.world.stock_on(p.product_id, today)) for p in products]

    # -- introspection for tests -------------------------------------------------------------
    def blocked_until(self, ip: str = "127.0.0.1") -> datetime | None:
        """When the block on `ip` ends on the rate clock, or None if it is not blocked now."""
        with self._lock:
            until = self._blocked_until.get(ip)
            return until if until is not None and self.rate_clock() < until else None


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: TelestoKnobs | None = None,
                rate_clock: Callable[[], datetime] | None = None,
                **knob_values: Any) -> SandboxServer[TelestoKnobs]:
    """A bound, not yet started Telesto sandbox over `world` (start() or use `with`).

    The API lives at `base_url + PRODUCTS_PATH`. `now` overrides the sandbox clock (default
    `world.now`); `rate_clock` drives the hourly window and the block (default: `now`); extra
    keyword arguments set knobs.
    """
    knobs = knobs if knobs is not None else TelestoKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = TelestoApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)
