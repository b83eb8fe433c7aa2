"""A push receiver on a loopback port of this process, and the sandbox's World pushed to it.

What `fleet-pipeline demo` (embedded sandbox) and the end-to-end tests use to exercise the whole
push path: the real receiver (`receiver.create_app` under uvicorn, on a thread) with its landing
files, and the Tracksolid sandbox's `PushSender` posting the World's events to it over HTTP.

The World's days are in the past when they are pushed, so the receiver's clock is the
`SendingClock`: the time the vendor would have sent the batches being received. Batches go
`CONCURRENT_BATCHES` at a time (as Jimi's pushers do, and so the receiver's group commit covers
several with one fsync), received at the sending time of the newest message among them; the
messages of each hour go in that hour, so a message is received within the hour it was sent. The
messages then land on the day a receiver running at the time would have landed them (a late fix
days after its own day), and the loads read them from the landing days they expect.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from itertools import groupby
from pathlib import Path

import httpx
import uvicorn

from fleet_pipeline.push.landing import utcnow
from fleet_pipeline.push.receiver import PushReceiver, create_app
from fleet_pipeline.sandbox.tracksolid.push import PushMessage, PushReport, PushSender, batches, push_messages
from fleet_pipeline.sandbox.world import World

HEALTHY_WITHIN_S = 60.0
CONCURRENT_BATCHES = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = HEALTHY_WITHIN_S, alive: Callable[[], str | None] = lambda: None) -> None:
    """Wait for the receiver's /healthz; ``alive`` returns why the receiver is gone, if it is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gone = alive()
        if gone:
            raise RuntimeError(f"the push receiver at {url} stopped before answering: {gone}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the push receiver at {url} did not answer /healthz within {timeout_s}s")


@contextmanager
def receiver_thread(token: str, landing: Path, max_body_bytes: int = 1024 * 1024,
                    clock: Callable[[], datetime] = utcnow, **kwargs) -> Iterator[tuple[str, PushReceiver]]:
    """The receiver served by uvicorn on a thread of this process: (base URL, the receiver).

    Leaving the block stops it the way SIGTERM stops the command: requests drained, then the
    landing writer closes its files (renamed to ``.jsonl``).
    """
    receiver = PushReceiver(token, landing, max_body_bytes, clock=clock, **kwargs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(receiver), host="127.0.0.1", port=port, log_level="warning",
                                           loop="asyncio", http="httptools", lifespan="on"))
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting thread below
            failure.append(exc)

    thread = threading.Thread(target=serve, name="push-receiver", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, alive=lambda: repr(failure[0]) if failure else None)
        yield url, receiver
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        if thread.is_alive():
            raise RuntimeError(f"the push receiver at {url} did not stop within 60s: its landing files may be open")


class SendingClock:
    """The receiver's clock while past days are pushed: the sending time of the current batch."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class DayPushed:
    day: date
    messages: int
    report: PushReport = field(default_factory=PushReport)

    def add(self, batch: PushReport) -> None:
        report = self.report
        report.requests += batch.requests
        report.acknowledged += batch.acknowledged
        report.retries += batch.retries
        report.refused += batch.refused
        report.refusals += batch.refusals


def push_world_days(world: World, days: Sequence[date], token: str, landing: Path, sent_by: datetime | None = None,
                    progress: Callable[[DayPushed], None] = lambda pushed: None) -> list[DayPushed]:
    """Start a receiver on loopback landing into ``landing``, push the World's Tracksolid messages
    of ``days`` to it (those sent by ``sent_by``, default now: a fix still in a device's buffer
    has not been pushed yet), each batch acknowledged before the next, then stop the receiver
    (its files closed). Raises when a batch is refused or never acknowledged."""
    sent_by = (sent_by or utcnow()).replace(tzinfo=None)
    clock = SendingClock()
    done = []
    with (receiver_thread(token, landing, clock=clock) as (url, _), PushSender(url, token) as sender,
          ThreadPoolExecutor(CONCURRENT_BATCHES, thread_name_prefix="push-sender") as pool):

        def send(batch: list[PushMessage]) -> PushReport:
            report = PushReport()
            sender.send_batch(batch[0].path, [m.item for m in batch], report)
            return report

        for day in days:
            messages = [m for m in push_messages(world, day) if m.sent_at <= sent_by]
            pushed = DayPushed(day, len(messages))
            # A pusher does not hold a part batch back for long: each hour's messages go in its hour.
            for _, hour in groupby(messages, key=lambda m: m.sent_at.replace(minute=0, second=0, microsecond=0)):
                cut = batches(hour, sender.batch_size)
                for start in range(0, len(cut), CONCURRENT_BATCHES):
                    together = cut[start:start + CONCURRENT_BATCHES]
                    clock.now = max(m.sent_at for batch in together for m in batch).replace(tzinfo=timezone.utc)
                    for report in pool.map(send, together):
                        pushed.add(report)
            if pushed.report.refused:
                raise RuntimeError(f"tracksolid push to the loopback receiver: {pushed.report.refused} message(s) "
                                   f"of {day} refused, first: {pushed.report.refusals[0]}")
            progress(pushed)
            done.append(pushed)
    return done
