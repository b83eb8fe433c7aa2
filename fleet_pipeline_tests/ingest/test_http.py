"""The shared HTTP layer against a scripted server on loopback: retries, waits, redaction, stats."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet_pipeline.ingest.http import (
    Backoff,
    CallStats,
    HttpSession,
    Reply,
    RequestParts,
    RetryPolicy,
    RetryableVendorError,
    Secrets,
    SlidingWindowLimiter,
    VendorAPIError,
    VendorAuthError,
    VendorHTTPError,
    VendorRateLimitError,
    VendorResponseError,
    VendorTransportError,
)

SECRET = "s3cr3t p@ss/word+&="


@dataclass
class Scripted:
    """One canned answer. ``action``: "send" | "drop" (close without answering) |
    "truncate" (announce more bytes than sent) | "stall" (sleep past the client timeout)."""

    status: int = 200
    body: bytes | str | dict = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "send"


class ScriptServer:
    """A loopback HTTP server answering from a script, the last entry repeating forever."""

    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.requests: list[dict] = []
        self.stall_s = 1.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    {
                        "path": self.path,
                        "body": body.decode(),
                        "headers": dict(self.headers),
                        "client_port": self.client_address[1],
                    }
                )
                step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if step.action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if step.action == "stall":
                    time.sleep(outer.stall_s)
                payload = step.body
                if isinstance(payload, dict):
                    payload = json.dumps(payload)
                if isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                announced = len(payload) * 2 + 10 if step.action == "truncate" else len(payload)
                self.send_header("Content-Length", str(announced))
                for key, value in step.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
                if step.action == "truncate":
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptServer]:
    srv = ScriptServer()
    yield srv
    srv.close()


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_session(
    sleep: SleepRecorder, *, secrets: Secrets | None = None, attempts: int = 4, **kw: object
) -> HttpSession:
    return HttpSession(
        "acme",
        retry=RetryPolicy(
            max_attempts=attempts,
            backoff=Backoff(base_s=1.0, multiplier=2.0, max_s=3.0, jitter=0.0),
            max_retry_after_s=60.0,
        ),
        secrets=secrets,
        sleep=sleep,
        rng=random.Random(7),
        timeout_s=kw.pop("timeout_s", 5.0),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


# --- retries and backoff ------------------------------------------------------------------------


def test_5xx_is_retried_with_exponential_backoff_then_succeeds(server: ScriptServer) -> None:
    server.script = [
        Scripted(503, "busy"), Scripted(502, "bad gw"), Scripted(500, "oops"), Scripted(200, {"n": 1})
    ]
    sleep = SleepRecorder()
    http = make_session(sleep)
    assert http.call("thing.get", server.url, build=RequestParts(data={"a": "1"})) == {"n": 1}
    # base 1 s doubling, capped at 3 s; jitter disabled so the schedule is exact.
    assert sleep.waits == [1.0, 2.0, 3.0]
    assert len(server.requests) == 4
    assert http.stats.calls == 4 and http.stats.retries == 3
    assert http.stats.backoff_wait_s == pytest.approx(6.0)
    assert http.stats.throttle_wait_s == 0
    assert http.stats.per_method == {"thing.get": 4}


def test_jitter_spreads_waits_within_bounds() -> None:
    backoff = Backoff(base_s=10.0, multiplier=2.0, max_s=100.0, jitter=0.25)
    rng = random.Random(1)
    delays = [backoff.delay(1, rng) for _ in range(50)]
    assert all(7.5 <= d <= 12.5 for d in delays)
    assert len({round(d, 6) for d in delays}) > 40
    assert all(backoff.delay(10, rng) <= 100.0 for _ in range(20))


def test_persistent_5xx_gives_up_with_named_error(server: ScriptServer) -> None:
    server.script = [Scripted(503, "<html>Service Unavailable</html>")]
    sleep = SleepRecorder()
    http = make_session(sleep, attempts=3)
    with pytest.raises(VendorHTTPError) as info:
        http.call("thing.get", server.url, build=RequestParts())
    text = str(info.value)
    assert text.startswith("acme thing.get:")
    assert "503" in text and "Service Unavailable" in text and "3 attempts" in text
    assert info.value.status == 503
    assert len(server.requests) == 3 and len(sleep.waits) == 2
    assert http.stats.failures == 1


def test_retry_after_seconds_is_honoured_and_counted_as_throttling(server: ScriptServer) -> None:
    server.script = [Scripted(429, "{}", {"Retry-After": "7"}), Scripted(200, {"ok": 1})]
    sleep = SleepRecorder()
    http = make_session(sleep)
    assert http.call("thing.get", server.url, build=RequestParts()) == {"ok": 1}
    assert sleep.waits == [7.0]
    assert http.stats.throttle_wait_s == pytest.approx(7.0)
    assert http.stats.backoff_wait_s == 0


def test_retry_after_http_date_is_honoured(server: ScriptServer) -> None:
    when = time.time() + 30
    header = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    server.script = [Scripted(503, "", {"Retry-After": header}), Scripted(200, {"ok": 1})]
    sleep = SleepRecorder()
    make_session(sleep).call("thing.get", server.url, build=RequestParts())
    assert len(sleep.waits) == 1 and 20 <= sleep.waits[0] <= 31


def test_retry_after_longer_than_allowed_fails_fast(server: ScriptServer) -> None:
    server.script = [Scripted(429, "slow down", {"Retry-After": "900"})]
    sleep = SleepRecorder()
    with pytest.raises(VendorRateLimitError) as info:
        make_session(sleep).call("thing.get", server.url, build=RequestParts())
    assert sleep.waits == []
    assert "900" in str(info.value) and "acme thing.get" in str(info.value)
    assert len(server.requests) == 1


def test_malformed_json_is_retried_then_succeeds(server: ScriptServer) -> None:
    server.script = [Scripted(200, '{"code": 0, "resu'), Scripted(200, {"code": 0})]
    sleep = SleepRecorder()
    http = make_session(sleep)
    assert http.call("thing.get", server.url, build=RequestParts()) == {"code": 0}
    assert len(sleep.waits) == 1 and http.stats.retries == 1


def test_malformed_json_everywhere_gives_clear_error(server: ScriptServer) -> None:
    html = "<html><body>Gateway says no " + "x" * 500 + "</body></html>"
    server.script = [Scripted(200, html)]
    sleep = SleepRecorder()
    with pytest.raises(VendorResponseError) as info:
        make_session(sleep, attempts=3).call("thing.list", server.url, build=RequestParts())
    text = str(info.value)
    assert "acme thing.list" in text and "not valid JSON" in text and "HTTP 200" in text
    assert "Gateway says no" in text
    assert "x" * 250 not in text  # only the first 200 characters of the body
    assert len(server.requests) == 3


def test_truncated_body_is_retried(server: ScriptServer) -> None:
    server.script = [Scripted(200, '{"code": 0}', action="truncate"), Scripted(200, {"code": 1})]
    sleep = SleepRecorder()
    http = make_session(sleep)
    assert http.call("thing.get", server.url, build=RequestParts()) == {"code": 1}
    assert len(server.requests) == 2 and len(sleep.waits) == 1


def test_dropped_connection_is_retried_then_reported(server: ScriptServer) -> None:
    server.script = [Scripted(action="drop")]
    sleep = SleepRecorder()
    with pytest.raises(VendorTransportError) as info:
        make_session(sleep, attempts=3).call("thing.get", server.url, build=RequestParts())
    assert "acme thing.get" in str(info.value) and "connection failed" in str(info.value)
    assert len(server.requests) == 3
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_read_timeout_is_retried(server: ScriptServer) -> None:
    server.stall_s = 0.5
    server.script = [Scripted(200, {"slow": 1}, action="stall"), Scripted(200, {"fast": 1})]
    sleep = SleepRecorder()
    http = make_session(sleep, timeout_s=(2.0, 0.1))
    assert http.call("thing.get", server.url, build=RequestParts()) == {"fast": 1}
    assert len(sleep.waits) == 1


def test_build_is_called_for_every_attempt(server: ScriptServer) -> None:
    server.script = [Scripted(503, ""), Scripted(503, ""), Scripted(200, {"ok": 1})]
    counter = iter(range(100))

    def build() -> RequestParts:
        return RequestParts(data={"attempt": str(next(counter))})

    make_session(SleepRecorder()).call("thing.get", server.url, build=build)
    assert [r["body"] for r in server.requests] == ["attempt=0", "attempt=1", "attempt=2"]


# --- vendor-declared errors -----------------------------------------------------------------------


def _vendor_check(reply: Reply) -> object:
    code = str(reply.payload.get("code"))
    if code == "0":
        return reply.payload["result"]
    if code == "busy":
        raise RetryableVendorError("acme", reply.method, "vendor busy", code, wait_s=4.5, throttle=True)
    if code == "flaky":
        raise RetryableVendorError("acme", reply.method, "vendor flaky", code)
    raise VendorAuthError("acme", reply.method, f"rejected: {reply.payload.get('msg')}", code)


def test_vendor_declared_retry_uses_vendor_wait(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"code": "busy"}), Scripted(200, {"code": 0, "result": [1]})]
    sleep = SleepRecorder()
    http = make_session(sleep)
    assert http.call("thing.list", server.url, build=RequestParts(), check=_vendor_check) == [1]
    assert sleep.waits == [4.5]
    assert http.stats.throttle_wait_s == pytest.approx(4.5)


def test_vendor_declared_retry_without_wait_uses_backoff(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"code": "flaky"}), Scripted(200, {"code": 0, "result": 2})]
    sleep = SleepRecorder()
    assert make_session(sleep).call(
        "thing.list", server.url, build=RequestParts(), check=_vendor_check
    ) == 2
    assert sleep.waits == [1.0]


def test_vendor_throttle_exhausted_becomes_rate_limit_error(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"code": "busy"})]
    sleep = SleepRecorder()
    with pytest.raises(VendorRateLimitError) as info:
        make_session(sleep, attempts=3).call(
            "thing.list", server.url, build=RequestParts(), check=_vendor_check
        )
    assert info.value.code == "busy" and "still throttled after 3 attempts" in str(info.value)
    assert len(server.requests) == 3


def test_vendor_fatal_error_is_not_retried(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"code": 1001, "msg": "bad"})]
    sleep = SleepRecorder()
    with pytest.raises(VendorAuthError) as info:
        make_session(sleep).call("thing.list", server.url, build=RequestParts(), check=_vendor_check)
    assert str(info.value) == "acme thing.list: rejected: bad (code 1001)"
    assert len(server.requests) == 1 and sleep.waits == []


def test_client_error_status_is_not_retried(server: ScriptServer) -> None:
    server.script = [Scripted(404, {"error": "no such route"})]
    sleep = SleepRecorder()
    with pytest.raises(VendorHTTPError) as info:
        make_session(sleep).call("thing.get", server.url, build=RequestParts())
    assert info.value.status == 404 and "no such route" in str(info.value)
    assert len(server.requests) == 1


# --- redaction -------------------------------------------------------------------------------------


def test_secrets_redact_raw_md5_and_urlencoded_forms() -> None:
    secrets = Secrets([SECRET, None, ""])
    md5 = hashlib.md5(SECRET.encode()).hexdigest()
    forms = [
        SECRET, md5, md5.upper(),
        urllib.parse.quote(SECRET, safe=""), urllib.parse.quote_plus(SECRET), urllib.parse.quote(SECRET),
    ]
    assert len(set(forms)) == 6
    for form in forms:
        out = secrets.redact(f"before {form} after")
        assert out == "before *** after", form
    body = urllib.parse.urlencode({"user_pwd_md5": md5, "pw": SECRET})
    assert secrets.redact(body) == "user_pwd_md5=***&pw=***"


def test_secret_containing_another_is_redacted_whole() -> None:
    secrets = Secrets(["abcd", "xxabcdxx"])
    assert secrets.redact("token=xxabcdxx") == "token=***"


def test_no_secret_in_errors_or_logs(server: ScriptServer, caplog: pytest.LogCaptureFixture) -> None:
    md5 = hashlib.md5(SECRET.encode()).hexdigest()
    secrets = Secrets([SECRET])
    server.script = [
        Scripted(503, f"upstream rejected password {SECRET}"),
        Scripted(200, f"<html>md5 was {md5.upper()} and {urllib.parse.quote_plus(SECRET)}"),
    ]
    caplog.set_level(logging.DEBUG, logger="fleet_pipeline.ingest.http")
    with pytest.raises(VendorResponseError) as info:
        make_session(SleepRecorder(), secrets=secrets, attempts=3).call(
            "thing.get", server.url, build=RequestParts(params={"pw": SECRET})
        )
    assert caplog.records, "retries must be logged"
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    everything = str(info.value) + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    for form in (SECRET, md5, md5.upper(), urllib.parse.quote_plus(SECRET), urllib.parse.quote(SECRET)):
        assert form not in everything
    assert "***" in everything


def test_secret_in_url_not_leaked_by_connection_errors(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on that port now: connection refused, with the URL in requests' message.
    secrets = Secrets([SECRET])
    caplog.set_level(logging.INFO, logger="fleet_pipeline.ingest.http")
    with pytest.raises(VendorTransportError) as info:
        make_session(SleepRecorder(), secrets=secrets, attempts=2).call(
            "thing.get", f"http://127.0.0.1:{port}/api", http_method="GET",
            build=RequestParts(params={"token": SECRET}),
        )
    everything = str(info.value) + "".join(r.getMessage() for r in caplog.records)
    assert "***" in everything
    for form in (SECRET, urllib.parse.quote_plus(SECRET), urllib.parse.quote(SECRET, safe="")):
        assert form not in everything


def test_vendor_error_from_check_is_redacted(server: ScriptServer) -> None:
    secrets = Secrets([SECRET])
    server.script = [Scripted(200, {"code": 1001, "msg": f"bad password {SECRET}"})]
    with pytest.raises(VendorAPIError) as info:
        make_session(SleepRecorder(), secrets=secrets).call(
            "thing.get", server.url, build=RequestParts(), check=_vendor_check
        )
    assert SECRET not in str(info.value) and "***" in str(info.value)


# --- stats and limiter -----------------------------------------------------------------------------


def test_stats_count_bytes_and_metadata(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"x": "y" * 100})]
    stats = CallStats()
    http = make_session(SleepRecorder(), stats=stats)
    http.call("a.one", server.url, build=RequestParts(data={"k": "v" * 10}))
    http.call("a.two", server.url, build=RequestParts(json={"k": 1}))
    http.call("a.one", server.url, build=RequestParts())
    meta = stats.as_metadata()
    assert meta["api_calls"] == 3 and meta["api_retries"] == 0
    assert meta["calls_per_method"] == {"a.one": 2, "a.two": 1}
    assert meta["bytes_sent"] == len("k=" + "v" * 10) + len('{"k": 1}')
    assert meta["bytes_received"] == 3 * len(json.dumps({"x": "y" * 100}))
    json.dumps(meta)  # must be plain JSON for Dagster metadata


def test_connections_are_pooled(server: ScriptServer) -> None:
    server.script = [Scripted(200, {"ok": 1})]
    http = make_session(SleepRecorder())
    for _ in range(5):
        http.call("a.one", server.url, build=RequestParts())
    # One keep-alive connection serves all calls: the server saw a single client port.
    assert len({r["client_port"] for r in server.requests}) == 1
    http.close()


def test_sliding_window_limiter_waits_for_the_window() -> None:
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    limiter = SlidingWindowLimiter(3, 10.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        assert limiter.acquire() == 0
    clock[0] = 4.0
    assert limiter.acquire() == pytest.approx(6.0)
    assert waits == [pytest.approx(6.0)]


def test_file_window_limiter_shares_one_budget_between_instances(tmp_path):
    from fleet_pipeline.ingest.http import FileWindowLimiter

    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    ledger = tmp_path / "ledger.json"
    first = FileWindowLimiter(ledger, 3, 1.0, clock=lambda: now[0], sleep=sleep)
    second = FileWindowLimiter(ledger, 3, 1.0, clock=lambda: now[0], sleep=sleep)
    assert [first.acquire(), first.acquire(), second.acquire()] == [0.0, 0.0, 0.0]
    assert second.remaining() == 0
    waited = second.acquire()  # the budget is shared: the 4th call waits for the window to move
    assert waited == pytest.approx(1.0) and slept == [pytest.approx(1.0)]
    ledger.write_text("not json")  # a torn ledger starts a fresh window instead of failing
    assert first.acquire() == 0.0


def test_an_even_file_limiter_spaces_calls_across_clients(tmp_path):
    """Paced evenly, concurrent callers cannot spend a window's budget in one burst."""
    from fleet_pipeline.ingest.http import FileWindowLimiter

    now = [1000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ledger = tmp_path / "ledger.json"
    clients = [FileWindowLimiter(ledger, 4, 1.0, evenly=True, clock=lambda: now[0], sleep=sleep) for _ in range(2)]
    stamps = []
    for n in range(8):
        clients[n % 2].acquire()
        stamps.append(now[0])
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps == [pytest.approx(0.25)] * 7
    # Any one-second window holds at most the budget.
    assert max(sum(1 for s in stamps if start <= s < start + 1.0) for start in stamps) == 4


def test_callers_paced_evenly_each_book_a_slot_of_their_own(tmp_path):
    """Callers asking at the same moment get consecutive slots, each sleeping until its own: none
    sleeps, wakes and asks again (waking late, it would have lost the slot for good)."""
    from fleet_pipeline.ingest.http import FileWindowLimiter

    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock stands still: every caller asks at 1000.0
        slept.append(seconds)
        if len(slept) > 20:
            raise AssertionError("a caller slept and asked again instead of keeping its slot")

    ledger = tmp_path / "ledger.json"
    clients = [FileWindowLimiter(ledger, 4, 1.0, evenly=True, clock=lambda: 1000.0, sleep=sleep) for _ in range(2)]
    waits = [clients[n % 2].acquire() for n in range(6)]
    assert waits == [pytest.approx(w) for w in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)]
    assert slept == waits[1:]
