"""Fake Telesto inventory API (`GET {base}/v2/products`) over the World's products and stock.

It speaks the protocol of `vendor-apis/telesto-inventory.md` as corrected by `FIELD-NOTES.md`, so
the Telesto client can be built and tested without a Pro subscription.

Transport. One endpoint, `GET /v2/products`, answers a plain JSON array of every product (the
doc shows no paging, so the sandbox has none: query parameters are ignored and the whole list
comes back). Every other method or path is 404 NOT_FOUND. All answers are JSON, errors too:
`{"statusCode": N, "error": {"type": T, "description": D}}` with the doc's types and (French)
descriptions: 401 UNAUTHORIZED, 403 FORBIDDEN, 404 NOT_FOUND, 429 TOO_MANY_REQUESTS,
500 SERVER_ERROR.

Rows. Every value is a string: numbers as decimal strings (`"stock_onhand": "50"`,
`"price": "129.00"`), nulls as `""`, `created` as `yyyy-MM-dd HH:mm:ss` without a time zone (the
World's naive UTC). Fields: id (24 lower-case hex), name, sku ("" for some accessories), ean_upc
("" when the product has none), category ("Traceurs GPS" / "Accessoires"), price (euros, two
decimals), stock_onhand, description (always ""), created. `stock_onhand` is
`world.stock_on(product_id, today)` with today the UTC day of the sandbox clock (stock at the end
of that day, the World's only granularity): negative for an oversold product, "" for the one the
back office does not count. Products created after the sandbox clock's "now" are
not listed yet; rows are ordered by (created, id).

Order of checks, like middleware in front of a router: the rate limit (a gateway: before
anything else, every path), then `force_500_next`, then the paths outside `/v2/` (404 without
auth), then auth (`Authorization: <key>` exactly `API_KEY`, no scheme: `Bearer <key>` is an
invalid key -> 401; missing -> 401), then the Pro subscription (`no_pro_subscription` -> 403),
then the route (404 for anything but `GET /v2/products`).

Rate limit (the `VendorApp.throttle` hook): per client IP, at most `rate_limit_per_hour` (100)
requests in any sliding `rate_window_s` (3600 s) window; the request that would be the 101st
blocks the IP for `block_s` (900 s) and answers 429, and so does every request during the block.
Requests during the block neither count nor extend it (the doc announces a 15-minute timeout,
not a rolling one). When the block ends the IP starts a fresh window: the timeout is the penalty,
so without the reset an IP whose hour was still full would be blocked again by its first call and
the "15 minutes" would mean nothing. Every request counts, whatever its answer (401, 404, 500
included: the gateway counts before the application sees it); only the generic `FaultKnobs`
503s, injected before the gateway, do not. `force_429_next` answers the next N requests 429
without blocking. Whether the real 429 carries `Retry-After` is unknown: by default it does not;
knob `retry_after_header` adds the seconds left in the block. The window runs on `rate_clock`
(default: the sandbox clock) so tests move time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from fleet_pipeline.sandbox.server import FaultKnobs, Request, Response, SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world.stock import Product
    from fleet_pipeline.sandbox.world import World

__all__ = [
    "API_KEY",
    "CREDENTIALS",
    "PRODUCTS_PATH",
    "TelestoApp",
    "TelestoKnobs",
    "make_server",
    "price_of",
    "sku_of",
]

API_KEY = "sandbox-telesto-key"
CREDENTIALS = {"api_key": API_KEY}
API_PREFIX = "/v2"
PRODUCTS_PATH = "/v2/products"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CATEGORY_TRACKERS = "Traceurs GPS"
CATEGORY_ACCESSORIES = "Accessoires"
# About one accessory in four has no SKU in the back office (served as "").
MISSING_SKU_SHARE = 0.25

# type -> (HTTP status, description); wording of the vendor doc's error table.
_ERRORS: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Clé API manquante ou invalide"),
    "FORBIDDEN": (403, "Abonnement Pro requis"),
    "NOT_FOUND": (404, "Ressource non trouvée"),
    "TOO_MANY_REQUESTS": (429, "Limite de débit dépassée (attendre 15 min)"),
    "SERVER_ERROR": (500, "Erreur interne, réessayez plus tard"),
}


@dataclass
class TelestoKnobs(FaultKnobs):
    """Generic faults plus the Telesto behaviour tests need to provoke (see the module doc)."""

    force_500_next: int = 0             # next N requests answer 500 SERVER_ERROR (JSON body)
    force_429_next: int = 0             # next N requests answer 429 without starting a block
    no_pro_subscription: bool = False   # every authenticated request answers 403 FORBIDDEN
    rate_limit_per_hour: int = 100
    rate_window_s: float = 3600.0
    block_s: float = 900.0
    retry_after_header: bool = False    # add Retry-After (seconds left in the block) to 429s


def _error(kind: str, method: str | None, *, headers: dict[str, str] | None = None) -> Response:
    status, description = _ERRORS[kind]
    payload = {"statusCode": status, "error": {"type": kind, "description": description}}
    return Response.json(payload, status, vendor_method=method, vendor_code=kind, headers=headers)


def _digest(*parts: object) -> int:
    """A stable 64-bit number from the parts (never Python's salted hash)."""
    text = ":".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def price_of(product: Product) -> str:
    """List price in euros, two decimals: a tracker 59-249 EUR, an accessory 4-39 EUR."""
    low, high = (59, 249) if product.model else (4, 39)
    cents = _digest("price", product.product_id) % ((high - low) * 100)
    whole = low + cents // 100
    return f"{whole}.{(cents % 100) // 10 * 10:02d}"


def sku_of(product: Product) -> str:
    """The back-office SKU: TRK-<model> for trackers, ACC-<4 hex> for accessories, "" for some."""
    if product.model:
        return "TRK-" + "".join(ch for ch in product.model.upper() if ch.isalnum())
    if (_digest("sku-missing", product.product_id) % 1000) / 1000 < MISSING_SKU_SHARE:
        return ""
    return f"ACC-{_digest('sku', product.product_id) % 0x10000:04X}"


def _text(value: object) -> str:
    """The vendor's encoding of any value: None -> "", everything else its string."""
    return "" if value is None else str(value)


class TelestoApp:
    """The Telesto protocol over one World (see the module docstring for every rule)."""

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
            return _error("TOO_MANY_REQUESTS", method)
        ip = request.client_ip
        with self._lock:
            t = self.rate_clock()
            until = self._blocked_until.get(ip)
            if until is not None and t < until:
                return self._blocked(method, until - t)
            if until is not None:
                # The timeout is over: a fresh window (see the module docstring).
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
        return _error("TOO_MANY_REQUESTS", method, headers=headers)

    def handle(self, request: Request) -> Response:
        method = self.vendor_method(request)
        if self.knobs.consume("force_500_next"):
            return _error("SERVER_ERROR", method)
        if not request.path.startswith(API_PREFIX + "/"):
            return _error("NOT_FOUND", method)
        presented = request.header("Authorization").strip()
        # Exactly the key: "Bearer <key>" is a different (invalid) key, as the doc's example shows.
        if not presented or not hmac.compare_digest(presented.encode("utf-8"),
                                                    API_KEY.encode("utf-8")):
            return _error("UNAUTHORIZED", method)
        if self.knobs.no_pro_subscription:
            return _error("FORBIDDEN", method)
        if request.http_method != "GET" or request.path.rstrip("/") != PRODUCTS_PATH:
            return _error("NOT_FOUND", method)
        return Response.json(self.product_rows(), vendor_method=method)

    # -- data --------------------------------------------------------------------------------
    def product_rows(self) -> list[dict[str, str]]:
        """Every product created by now, as the vendor sends it (strings only)."""
        now = self.now()
        today = now.date()
        products = sorted((p for p in self.world.products if p.created <= now),
                          key=lambda p: (p.created, p.product_id))
        return [self._row(p, self.world.stock_on(p.product_id, today)) for p in products]

    @staticmethod
    def _row(product: Product, stock: int | None) -> dict[str, str]:
        return {
            "id": product.product_id,
            "name": product.name,
            "sku": sku_of(product),
            "ean_upc": _text(product.ean_upc),
            "category": CATEGORY_TRACKERS if product.model else CATEGORY_ACCESSORIES,
            "price": price_of(product),
            "stock_onhand": _text(stock),
            "description": "",
            "created": product.created.strftime(TIME_FORMAT),
        }

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
