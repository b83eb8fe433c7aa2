"""The sandbox's own record of the calls its rate limit judged, by the caller each counts against.

A vendor's budget belongs to whom it counts against: Navixy counts per user hash (an API key is
one, so an account) AND per client IP (docs/vendor-apis/FIELD-NOTES.md: 50 requests a second
each). :class:`CallLog`, installed by ``benchmarks.sandbox_host --call-log-file``, wraps the
vendors' ``throttle`` hooks and appends one line per API call to a file: its wall time, the caller
and whether the limit refused it (HTTP 429). The time is the one the sandbox judged the call by:
the log is the sandbox's rate clock (``make_server(rate_clock=...)``), which notes each reading for
the call in hand, so a busiest window counted from the log is the window the sandbox counted (its
monotonic clock, shifted to wall time once). The benchmark process reads a time span of the file
back (:func:`read_calls`) and :func:`per_caller` gives each caller's calls, 429s and busiest
1-second window, and the same over every caller (here one client IP, loopback).

Navixy callers (:func:`navixy_caller`) are named by the World account the API key reaches
(``sandbox.navixy.account_api_key``); the key that sees every account is ``api_key``, a session
hash ``session``. No key is written, only the account it belongs to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet_pipeline.sandbox.messages import Request

# The key of per_caller's answer that sums every caller: the vendor's per-IP window.
EVERY_CALLER = "*"
FLUSH_INTERVAL_S = 0.2


def navixy_caller(request: Request) -> str | None:
    """The caller a Navixy API call counts against (None: not an API call, not rate-limited)."""
    from fleet_pipeline.sandbox.navixy.protocol import API_KEY, API_PREFIX, NavixyError, hash_of, request_values

    if not request.path.startswith(API_PREFIX + "/"):
        return None
    try:
        values = request_values(request)
    except NavixyError:
        values = {}
    presented = hash_of(request, values) or ""
    if presented == API_KEY:
        return "api_key"
    if presented.startswith(API_KEY + "."):
        return presented[len(API_KEY) + 1:]
    return "session" if presented else "anonymous"


CALLERS: dict[str, Callable[[Request], str | None]] = {"navixy": navixy_caller}


class CallLog:
    """Appends ``<unix time> <caller> <0|1 refused>`` per rate-limited call to ``path``.

    Give :meth:`rate_clock` to the vendor's server as its rate clock, then :meth:`wrap` its app.
    Lines are gathered in memory and written by a thread every :data:`FLUSH_INTERVAL_S` (and at
    :meth:`close`): a file write per call would slow the server the benchmark measures against.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._judged = threading.local()  # the rate clock's reading for the call this thread serves
        self._wall_offset = time.time() - time.monotonic()
        self._closed = threading.Event()
        path.write_text("")
        self._writer = threading.Thread(target=self._flush_periodically, name="call-log", daemon=True)
        self._writer.start()

    def rate_clock(self) -> float:
        """``time.monotonic``, noting the reading for the call this thread is judging."""
        now = time.monotonic()
        self._judged.at = now
        return now

    def wrap(self, app: Any, caller_of: Callable[[Request], str | None]) -> None:
        throttle = app.throttle

        def logged(request: Request) -> Any:
            self._judged.at = None
            refused = throttle(request)
            caller = caller_of(request)
            if caller is not None:
                # A call refused before the window was read (a forced 429) is logged at its end.
                judged = self._judged.at if self._judged.at is not None else time.monotonic()
                at = judged + self._wall_offset
                with self._lock:
                    self._pending.append(f"{at:.6f} {caller} {int(refused is not None)}\n")
            return refused

        app.throttle = logged

    def _flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            with self.path.open("a") as out:
                out.writelines(lines)

    def _flush_periodically(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL_S):
            self._flush()

    def close(self) -> None:
        self._closed.set()
        self._writer.join()
        self._flush()


def read_calls(path: Path, since: float, until: float) -> list[tuple[float, str, bool]]:
    """The logged calls with ``since <= time <= until``: (time, caller, refused), oldest first."""
    calls = []
    for line in path.read_text().splitlines():
        at, caller, refused = line.split(" ")
        if since <= float(at) <= until:
            calls.append((float(at), caller, refused == "1"))
    return sorted(calls)


def busiest_window(times: list[float], window_s: float = 1.0) -> int:
    """The most ``times`` in any window of ``window_s`` (sliding: every window that starts at one)."""
    times = sorted(times)
    most = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def per_caller(calls: list[tuple[float, str, bool]]) -> dict[str, dict[str, int]]:
    """Per caller, and over all of them (:data:`EVERY_CALLER`): calls admitted, calls refused with
    a 429, and the busiest 1-second window of admitted calls (refused calls do not count against
    the limit)."""
    by_caller: dict[str, list[tuple[float, bool]]] = {}
    for at, caller, refused in calls:
        by_caller.setdefault(caller, []).append((at, refused))
        by_caller.setdefault(EVERY_CALLER, []).append((at, refused))
    return {caller: {"calls": sum(1 for _, refused in seen if not refused),
                     "throttled_429": sum(1 for _, refused in seen if refused),
                     "busiest_1s": busiest_window([at for at, refused in seen if not refused])}
            for caller, seen in sorted(by_caller.items())}
