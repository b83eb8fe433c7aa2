"""Shared machinery for the fake vendor servers: HTTP plumbing, fault knobs, request log.

Every vendor sandbox (Tracksolid, Navixy, Teltonika FOTA, AOVX, Telesto) is a `VendorApp` -- a
plain object that turns a parsed `Request` into a `Response` -- served by one `SandboxServer`.
The server owns everything that is not the vendor's protocol, so that reliability behaviour is
the same for all five and testable without a vendor in the way:

* latency, a burst of 503s, a random 5xx rate, malformed and truncated bodies (`FaultKnobs`),
  settable while the server runs and consumed by count so tests are deterministic;
* the vendor's own throttling, through the `VendorApp.throttle` hook, which runs before the
  request reaches the protocol handler (like a gateway in front of the real API);
* a request log (HTTP method, path without query, vendor method, status, vendor result code,
  injected fault) that tests use to count calls. Bodies and query strings are never logged: they
  carry signatures, passwords and tokens.

The server binds in the constructor (port 0 picks a free port, so `base_url` is known at once),
serves on daemon threads, and can also run in the foreground for the CLI (`serve_forever`).
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Generic, Mapping, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "FaultKnobs",
    "LoggedRequest",
    "ManualClock",
    "Request",
    "Response",
    "SandboxServer",
    "VendorApp",
    "html_error_page",
    "serve_forever",
]


def utcnow() -> datetime:
    """Naive-UTC wall clock (the project's one datetime convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class ManualClock:
    """A sandbox clock that tests move by hand; call it to read the time.

    Servers read "now" from a callable so a test can reveal late-uploaded points, expire tokens
    or release a once-a-minute limit by moving this clock instead of sleeping.
    """

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword arguments; returns the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now


@dataclass
class FaultKnobs:
    """Faults injected by the server in front of any vendor protocol; safe to change at run time.

    Count knobs (`*_next`) apply to the next N requests and are consumed atomically, so a test
    knows exactly which calls fail. `error_rate_5xx` is a probability drawn from a seeded RNG for
    soak/benchmark runs where "about 5 % fail" is the point. Vendor knobs subclass this.
    """

    latency_s: float = 0.0          # added to every request before it is handled
    fail_next_5xx: int = 0          # next N requests answer 503 without reaching the vendor app
    error_rate_5xx: float = 0.0     # probability that a request answers 503
    malformed_json_next: int = 0    # next N responses carry a non-JSON body (HTTP 200)
    truncated_body_next: int = 0    # next N responses carry only the first half of their body
    # "short": Content-Length matches the cut body (a complete HTTP answer with broken JSON);
    # "drop": the full length is announced and the connection closes midway (IncompleteRead).
    truncate_mode: str = "short"
    fault_seed: int = 0             # seeds the RNG behind error_rate_5xx
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.fault_seed)
        if self.truncate_mode not in ("short", "drop"):
            raise ValueError(f"truncate_mode must be 'short' or 'drop', not {self.truncate_mode!r}")

    def set(self, **values: Any) -> None:
        """Change several knobs atomically (unknown names raise, so typos do not pass silently)."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(values) - names
        if unknown:
            raise AttributeError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)
            if "fault_seed" in values:
                self._rng = random.Random(self.fault_seed)

    def consume(self, name: str) -> bool:
        """Take one unit from count knob `name`; True if a unit was there (the fault applies)."""
        with self._lock:
            remaining = getattr(self, name)
            if remaining > 0:
                setattr(self, name, remaining - 1)
                return True
            return False

    def roll_5xx(self) -> bool:
        """Decide whether this request fails with a 503 (count first, then the random rate)."""
        if self.consume("fail_next_5xx"):
            return True
        with self._lock:
            return self.error_rate_5xx > 0 and self._rng.random() < self.error_rate_5xx


KnobsT = TypeVar("KnobsT", bound=FaultKnobs)


@dataclass
class Request:
    """One HTTP request as the vendor app sees it; parsed views are computed once on demand."""

    http_method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    # The peer's address: vendors that limit per client IP (Navixy) key their windows on it.
    client_ip: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def header(self, name: str, default: str = "") -> str:
        """A header by case-insensitive name (clients spell `authorization` in any case)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    def form(self) -> list[tuple[str, str]] | None:
        """The body as form pairs (order and duplicates kept), or None if it is not a form."""
        if "form" not in self._cache:
            pairs: list[tuple[str, str]] | None = None
            if self.content_type == "application/x-www-form-urlencoded":
                try:
                    pairs = parse_qsl(self.body.decode("utf-8"), keep_blank_values=True,
                                      strict_parsing=False, errors="strict")
                except UnicodeDecodeError:
                    pairs = None
            self._cache["form"] = pairs
        return self._cache["form"]

    def json(self) -> Any:
        """The body parsed as JSON, or None if it is empty or not JSON."""
        if "json" not in self._cache:
            try:
                self._cache["json"] = json.loads(self.body) if self.body else None
            except (ValueError, UnicodeDecodeError):
                self._cache["json"] = None
        return self._cache["json"]


@dataclass
class Response:
    """What a vendor app answers; `vendor_method`/`vendor_code` only feed the request log."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    vendor_method: str | None = None
    vendor_code: str | None = None

    @classmethod
    def json(cls, payload: Any, status: int = 200, *, vendor_method: str | None = None,
             vendor_code: str | int | None = None,
             headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status=status, body=body, headers=dict(headers or {}),
                   vendor_method=vendor_method,
                   vendor_code=None if vendor_code is None else str(vendor_code))

    @classmethod
    def html(cls, status: int, title: str, detail: str, *,
             vendor_method: str | None = None) -> Response:
        return cls(status=status, body=html_error_page(status, title, detail),
                   content_type="text/html;charset=UTF-8", vendor_method=vendor_method)


def html_error_page(status: int, title: str, detail: str) -> bytes:
    """A Java-style error page: what real gateways return where a client expects JSON."""
    from html import escape

    return (
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status "
        f"{status} - {escape(title)}</title></head><body><h1>HTTP Status {status} - "
        f"{escape(title)}</h1><hr/><p><b>Description</b> {escape(detail)}</p><hr/>"
        "<h3>Apache Tomcat</h3></body></html>"
    ).encode("utf-8")


class VendorApp(Protocol):
    """A vendor's protocol, independent of HTTP plumbing and faults."""

    vendor: str

    def vendor_method(self, request: Request) -> str | None:
        """The vendor's API method this request names (for the log), if it can tell."""

    def throttle(self, request: Request) -> Response | None:
        """The vendor's own rate-limit answer for this request, or None to let it through."""

    def handle(self, request: Request) -> Response:
        """Answer a request that passed the fault and throttle stages."""


@dataclass(frozen=True)
class LoggedRequest:
    """One served request. Deliberately no body, query string or headers: they hold secrets."""

    at: datetime                 # wall clock, naive UTC
    http_method: str
    path: str
    vendor_method: str | None
    status: int
    vendor_code: str | None      # the vendor's result code when the answer was a vendor answer
    fault: str | None            # "5xx" | "throttle" | "malformed_json" | "truncated" | None


_FIVE_XX_PAGE = Response.html(503, "Service Unavailable",
                              "The server is temporarily unable to service your request.")

_MALFORMED_BODY = (b"<html><head><title>502 Bad Gateway</title></head><body>"
                   b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                   b"</body></html>")


class SandboxServer(Generic[KnobsT]):
    """A threaded loopback HTTP server in front of one `VendorApp`.

    Bound on construction; `start()` serves on a daemon thread (tests, the embedded sandbox),
    `serve_forever` in this module runs it in the foreground (CLI). Usable as a context manager.
    """

    def __init__(self, app: VendorApp, knobs: KnobsT, host: str = "127.0.0.1",
                 port: int = 0, log_limit: int = 100_000) -> None:
        self.app = app
        self.knobs: KnobsT = knobs
        # Bounded so a long benchmark or standalone run does not grow without end.
        self._log: deque[LoggedRequest] = deque(maxlen=log_limit)
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer[KnobsT]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name=f"sandbox-{self.app.vendor}-{self.port}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer[KnobsT]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log -------------------------------------------------------------------------
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of the log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def count(self, vendor_method: str | None = None, *, status: int | None = None,
              vendor_code: str | int | None = None, fault: str | None = None) -> int:
        """How many logged requests match every filter given."""
        code = None if vendor_code is None else str(vendor_code)
        return sum(
            1 for r in self.requests()
            if (vendor_method is None or r.vendor_method == vendor_method)
            and (status is None or r.status == status)
            and (code is None or r.vendor_code == code)
            and (fault is None or r.fault == fault)
        )

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    # -- the pipeline every request goes through ----------------------------------------------
    def dispatch(self, request: Request) -> tuple[Response, str | None]:
        """Faults, then the vendor's throttle, then the vendor; returns (response, fault name)."""
        if self.knobs.latency_s > 0:
            time.sleep(self.knobs.latency_s)
        if self.knobs.roll_5xx():
            return _FIVE_XX_PAGE, "5xx"
        throttled = self.app.throttle(request)
        if throttled is not None:
            return throttled, "throttle"
        return self.app.handle(request), None

    def record(self, request: Request, response: Response, fault: str | None) -> None:
        method = response.vendor_method
        if method is None:
            try:
                method = self.app.vendor_method(request)
            except Exception:  # noqa: BLE001 - the log must never break a response
                method = None
        entry = LoggedRequest(at=utcnow(), http_method=request.http_method, path=request.path,
                              vendor_method=method, status=response.status,
                              vendor_code=response.vendor_code, fault=fault)
        with self._log_lock:
            self._log.append(entry)


def _make_handler(server: SandboxServer[Any]) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to one SandboxServer (http.server wants a class, not an object)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"     # keep-alive, like the real APIs behind a load balancer
        server_version = "sandbox"
        sys_version = ""
        timeout = 60                      # idle keep-alive connections release their thread
        disable_nagle_algorithm = True    # headers and body go out as separate writes

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            split = urlsplit(self.path)
            request = Request(http_method=self.command, path=split.path, query=split.query,
                              headers={k: v for k, v in self.headers.items()}, body=body,
                              client_ip=str(self.client_address[0]))
            try:
                response, fault = server.dispatch(request)
            except Exception as exc:  # noqa: BLE001 - a sandbox bug must answer 500, not hang
                response, fault = Response.html(500, "Internal Server Error",
                                                f"sandbox error: {type(exc).__name__}"), None
            response, fault, drop = _post_faults(server.knobs, response, fault)
            server.record(request, response, fault)
            self._write(response, drop)

        def _write(self, response: Response, drop_midway: bool) -> None:
            body = response.body
            announced = len(body) * 2 if drop_midway else len(body)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(announced))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if drop_midway:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # The stdlib prints the request line, query string included (secrets); stay quiet.
            return

    return Handler


def _post_faults(knobs: FaultKnobs, response: Response,
                 fault: str | None) -> tuple[Response, str | None, bool]:
    """Corrupt a finished answer if a body knob says so; returns (response, fault, drop_midway).

    Only genuine vendor answers are corrupted, so a 503 or throttle answer never uses up a
    body-fault count that a test set for the request after it.
    """
    if fault is not None:
        return response, fault, False
    if knobs.consume("malformed_json_next"):
        return (Response(status=200, body=_MALFORMED_BODY, content_type=response.content_type,
                         vendor_method=response.vendor_method), "malformed_json", False)
    if knobs.consume("truncated_body_next"):
        cut = response.body[: len(response.body) // 2]
        truncated = Response(status=response.status, body=cut, content_type=response.content_type,
                             headers=response.headers, vendor_method=response.vendor_method,
                             vendor_code=response.vendor_code)
        return truncated, "truncated", knobs.truncate_mode == "drop"
    return response, fault, False


def serve_forever(server_factory: Callable[[str, int], SandboxServer[Any]],
                  host: str = "127.0.0.1", port: int = 0, *,
                  announce: Callable[[str], None] = print) -> None:
    """Run one sandbox in the foreground until Ctrl-C or SIGTERM (the CLI's standalone mode).

    `server_factory(host, port)` builds the server, e.g.
    `lambda h, p: tracksolid.make_server(world, h, p)`; `announce` receives the base URL line.
    """
    server = server_factory(host, port)
    stopped = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    server.start()
    announce(f"{server.app.vendor} sandbox listening on {server.base_url}")
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
