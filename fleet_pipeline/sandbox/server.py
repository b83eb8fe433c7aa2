"""Shared machinery for the fake vendor servers: the HTTP server, its request log, the clocks.

Every vendor sandbox (Tracksolid, Navixy, Teltonika FOTA, AOVX, Telesto) is a `VendorApp` -- a
plain object that turns a parsed `Request` into a `Response` (messages.py) -- served by one
`SandboxServer`.
The server owns everything that is not the vendor's protocol, so that reliability behaviour is
the same for all five and testable without a vendor in the way:

* latency, a burst of 503s, a random 5xx rate, malformed and truncated bodies (`FaultKnobs`,
  faults.py), settable while the server runs and consumed by count so tests are deterministic;
* the vendor's own throttling, through the `VendorApp.throttle` hook, which runs before the
  request reaches the protocol handler (like a gateway in front of the real API);
* a request log (HTTP method, path without query, vendor method, status, vendor result code,
  injected fault) that tests use to count calls. Bodies and query strings are never logged: they
  carry signatures, passwords and tokens.

The server binds in the constructor (port 0 picks a free port, so `base_url` is known at once),
serves on daemon threads, and can also run in the foreground for the CLI (`serve_forever`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic
from urllib.parse import urlsplit

from fleet_pipeline.sandbox.faults import FIVE_XX_PAGE, KnobsT, post_faults
from fleet_pipeline.sandbox.messages import Request, Response, VendorApp

__all__ = [
    "LoggedRequest",
    "ManualClock",
    "SandboxServer",
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
            return FIVE_XX_PAGE, "5xx"
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
            response, fault, drop = post_faults(server.knobs, response, fault)
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
