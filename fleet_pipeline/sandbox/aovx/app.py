"""The AOVX sandbox app: knobs, the token check, dispatch to a route, and `make_server`."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.aovx.endpoints import Endpoints
from fleet_pipeline.sandbox.aovx.protocol import (
    API_PREFIX,
    OTA_REPORT,
    OTA_REPORT_PATH,
    RETENTION_DAYS,
    TERMINAL_LIST,
    TERMINAL_LIST_PATH,
    TOKEN,
    AovxError,
    not_found,
)
from fleet_pipeline.sandbox.faults import FaultKnobs
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.server import SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, World


@dataclass
class AovxKnobs(FaultKnobs):
    """Generic faults plus the AOVX behaviour tests need to provoke (see SPEC.md)."""

    token: str = TOKEN
    force_500_next: int = 0
    force_401_next: int = 0
    page_size_cap: int = 100
    max_ids: int | None = None        # undocumented; None = no limit
    reasonable_paging: bool = False   # a page past the end repeats the last page
    retention_days: int = RETENTION_DAYS   # attempts last updated longer ago are purged


class AovxApp(Endpoints):
    """The AOVX protocol over one World (SPEC.md states every rule)."""

    vendor = "aovx"

    def __init__(self, world: World, knobs: AovxKnobs, now: Callable[[], datetime] | None = None) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._lock = threading.Lock()
        self._devices: list[Device] | None = None

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        return {
            API_PREFIX + OTA_REPORT_PATH: OTA_REPORT,
            API_PREFIX + TERMINAL_LIST_PATH: TERMINAL_LIST,
        }.get(request.path.rstrip("/"))

    def throttle(self, request: Request) -> Response | None:
        return None   # AOVX documents no rate limit and none has been observed

    def handle(self, request: Request) -> Response:
        method = self.vendor_method(request)
        if not request.path.startswith(API_PREFIX + "/"):
            return not_found(request.path, self.now())
        try:
            # RuoYi's security filter runs before routing: no token, no 404 either
            self._authenticate(request)
            if method is None:
                return not_found(request.path, self.now())
            if self.knobs.consume("force_500_next"):
                raise AovxError(500, "系统繁忙，请稍后再试")   # "system busy, try again later"
            expected = "POST" if method == OTA_REPORT else "GET"
            if request.http_method != expected:
                raise AovxError(500, f"Request method '{request.http_method}' not supported", "msg")
            payload = self.ota_report(request) if method == OTA_REPORT else self.terminal_list(request)
        except AovxError as exc:
            return Response.json({"code": exc.code, exc.field_name: exc.text},
                                 vendor_method=method, vendor_code=exc.code)
        return Response.json(payload, vendor_method=method, vendor_code=200)

    # -- auth --------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> None:
        presented = request.header("Authorization").strip()
        if presented.startswith("Bearer "):
            presented = presented[len("Bearer "):].strip()
        presented = presented or request.header("token").strip()
        rejected = self.knobs.consume("force_401_next")
        if rejected or not presented or not hmac.compare_digest(
            presented.encode("utf-8"), self.knobs.token.encode("utf-8")
        ):
            # RuoYi's own words: "request to <path>: authentication failed, cannot access system resources"
            raise AovxError(401, f"请求访问：{request.path}，认证失败，无法访问系统资源", "msg")


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: AovxKnobs | None = None,
                **knob_values: Any) -> SandboxServer[AovxKnobs]:
    """A bound, not yet started AOVX sandbox over `world` (start() or use `with`).

    The API lives under `base_url + API_PREFIX`; `now` overrides the sandbox clock (default
    `world.now`); extra keyword arguments set knobs.
    """
    knobs = knobs if knobs is not None else AovxKnobs()
    if knob_values:
        knobs.set(**knob_values)
    return SandboxServer(AovxApp(world, knobs, now=now), knobs, host=host, port=port)
