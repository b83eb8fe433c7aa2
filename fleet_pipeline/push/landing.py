"""The landing files: every pushed item, durable on disk before the vendor hears "success".

The contract with the warehouse load (issue 19; docs/push.md): under ``<FLEET_DATA_DIR>/push_landing/
<received UTC day>/``, files of one JSON object per line, ``{"msg_id", "push_path", "received_at",
"item"}``, written append-only and fsync'd. A file being written ends in ``.jsonl.open`` and is
renamed to ``.jsonl`` when closed; readers take closed files and may read ``.open`` files up to their
last complete line. The same message may appear twice (a vendor retry after a lost answer, or a
re-send across a receiver restart): the load de-duplicates on ``msg_id``.

Each receiver process writes its own files (process id and a random part in the name) and holds an
exclusive ``flock`` on its open files, so a starting receiver can tell an abandoned ``.open`` file
(its writer died: no lock) from a live one and close it, cut back to its last complete line.
`LandingWriter` gathers the lines of every request that arrives while the previous fsync runs and
covers them with one write and one fsync (group commit): each request is answered only after the
fsync that covers its lines has returned.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleet_pipeline import settings
from fleet_pipeline.ingest.env import env_value

LANDING_FOLDER = "push_landing"
OPEN_SUFFIX = ".jsonl.open"
CLOSED_SUFFIX = ".jsonl"
# A closed file is what the load's sensor picks up, so files are closed at least this often...
DEFAULT_MAX_FILE_AGE_S = 60.0
# ...and before they grow past this size.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


def landing_root(env: Mapping[str, str] | None = None) -> Path:
    """Where the receiver writes and the load reads: FLEET_PUSH_LANDING_DIR, else
    ``<FLEET_DATA_DIR>/push_landing``."""
    env = os.environ if env is None else env
    configured = env_value(env, "FLEET_PUSH_LANDING_DIR")
    return Path(configured).resolve() if configured else settings.data_dir(env) / LANDING_FOLDER


def canonical_json(item: Mapping[str, Any]) -> str:
    """The item as canonical JSON: keys sorted, no blanks, non-ASCII kept as is."""
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def message_id(push_path: str, item: Mapping[str, Any]) -> str:
    """A message's identity: sha256 hex of the push path followed by the item's canonical JSON.

    The same item pushed twice (a retry) has the same id; the same fields on another push path
    (a GPS fix and an alarm at one instant) do not.
    """
    return hashlib.sha256((push_path + canonical_json(item)).encode("utf-8")).hexdigest()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class LandingRecord:
    """One line of a landing file."""

    msg_id: str
    push_path: str
    received_at: datetime  # aware UTC
    item: dict[str, Any]

    @classmethod
    def of(cls, push_path: str, item: dict[str, Any], received_at: datetime) -> LandingRecord:
        return cls(message_id(push_path, item), push_path, received_at, item)

    @property
    def day(self) -> str:
        return self.received_at.strftime("%Y-%m-%d")

    def line(self) -> bytes:
        received = self.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return (json.dumps({"msg_id": self.msg_id, "push_path": self.push_path, "received_at": received,
                            "item": self.item}, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _fsync_dir(path: Path) -> None:
    """Make a file's creation or rename in ``path`` durable (the data fsync does not cover it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete_length(fd: int) -> int:
    """The length of the file up to and including its last newline (a killed writer's tail cut off)."""
    size = os.fstat(fd).st_size
    position, chunk = size, 65536
    while position > 0:
        start = max(0, position - chunk)
        data = os.pread(fd, position - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _close_file(fd: int, path: Path, length: int | None = None) -> Path:
    """Cut the file to ``length`` (its last complete line by default), fsync, rename to .jsonl."""
    try:
        length = _complete_length(fd) if length is None else length
        if os.fstat(fd).st_size != length:
            os.ftruncate(fd, length)
        os.fsync(fd)
        closed = path.with_name(path.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX)
        os.rename(path, closed)
        _fsync_dir(path.parent)
        return closed
    finally:
        os.close(fd)  # releases the flock


def recover_abandoned(root: Path) -> list[Path]:
    """Close every ``.open`` file no live receiver holds (its writer was killed): the files closed."""
    closed = []
    for path in sorted(root.glob(f"*/*{OPEN_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # closed by its writer meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live receiver is writing it
            os.close(fd)
            continue
        closed.append(_close_file(fd, path))
    return closed


class _OpenFile:
    def __init__(self, directory: Path, opened_at: float) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%H%M%S")
        self.path = directory / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}{OPEN_SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_dir(directory)  # the file's name must survive a crash as well as its lines
        self.size = 0  # bytes known to be complete lines
        self.opened_at = opened_at

    def append(self, data: bytes) -> None:
        view, written = memoryview(data), 0
        try:
            while written < len(data):
                written += os.write(self.fd, view[written:])
        except OSError:
            os.ftruncate(self.fd, self.size)  # no half line for the next append to follow
            raise
        self.size += len(data)

    def close(self) -> Path:
        return _close_file(self.fd, self.path, self.size)


class LandingFiles:
    """The files of one receiver process: one open file per received day, closed when due."""

    def __init__(self, root: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 max_file_age_s: float = DEFAULT_MAX_FILE_AGE_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.max_file_age_s = max_file_age_s
        self._monotonic = monotonic
        self._open: dict[str, _OpenFile] = {}

    def write_durably(self, lines_by_day: Mapping[str, list[bytes]]) -> None:
        """Append the lines to each day's open file and fsync them: when this returns they are on disk."""
        for day, lines in lines_by_day.items():
            current = self._open.get(day)
            if current is None:
                current = self._open[day] = _OpenFile(self.root / day, self._monotonic())
            try:
                current.append(b"".join(lines))
                os.fsync(current.fd)
            except OSError:
                # The file may hold lines whose fsync failed; nothing more goes into it.
                self._open.pop(day)
                current.close()
                raise
            if current.size >= self.max_file_bytes:
                self._open.pop(day).close()

    def close_due(self, today: str) -> list[Path]:
        """Close the files of past days and those open longer than the age limit."""
        now = self._monotonic()
        due = [day for day, current in self._open.items()
               if day != today or now - current.opened_at >= self.max_file_age_s]
        return [self._open.pop(day).close() for day in due]

    def close_all(self) -> list[Path]:
        return [self._open.pop(day).close() for day in list(self._open)]

    def abandon(self) -> list[Path]:
        """Let go of the open files as a killed receiver would: left ``.open``, unlocked, not renamed."""
        paths = []
        for day in list(self._open):
            current = self._open.pop(day)
            os.close(current.fd)
            paths.append(current.path)
        return paths


class LandingWriter:
    """Group commit on the event loop: `land` returns once an fsync covers the given records."""

    def __init__(self, files: LandingFiles, clock: Callable[[], datetime] = utcnow) -> None:
        self.files = files
        self._clock = clock
        self._pending: dict[str, list[bytes]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.fsyncs = 0  # group commits done: requests per fsync is a figure of the load test

    async def start(self) -> None:
        await asyncio.to_thread(recover_abandoned, self.files.root)
        self._task = asyncio.create_task(self._run(), name="landing-writer")

    async def land(self, records: list[LandingRecord]) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("the landing writer is not running")
        waiter = asyncio.get_running_loop().create_future()
        for record in records:
            self._pending.setdefault(record.day, []).append(record.line())
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self.files.close_all)

    def _commit(self, pending: Mapping[str, list[bytes]]) -> None:
        self.files.write_durably(pending)
        self.files.close_due(self._clock().strftime("%Y-%m-%d"))  # age-closing also under steady load

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._waiters:
                pending, waiters = self._pending, self._waiters
                self._pending, self._waiters = {}, []
                try:
                    await asyncio.to_thread(self._commit, pending)
                except Exception as exc:  # noqa: BLE001 - every waiting request must hear of it
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    self.fsyncs += 1
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
            elif self._closing:
                return
            else:
                await asyncio.to_thread(self.files.close_due, self._clock().strftime("%Y-%m-%d"))


def day_files(root: Path, day: str, include_open: bool = True) -> list[Path]:
    """The closed (and, by default, still open) landing files of one received day, by name."""
    folder = root / day
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.endswith(CLOSED_SUFFIX) or (include_open and p.name.endswith(OPEN_SUFFIX)))


def landing_files(root: Path, include_open: bool = True) -> list[Path]:
    """The landing files under ``root``, closed ones and (by default) those still being written."""
    patterns = [f"*/*{CLOSED_SUFFIX}"] + ([f"*/*{OPEN_SUFFIX}"] if include_open else [])
    return sorted(path for pattern in patterns for path in root.glob(pattern))


def complete_bytes(path: Path) -> bytes:
    """A landing file up to its last complete line: an open file's last line may still be half
    written and is left for the next read. An open file closed (renamed) since it was listed is
    read under its new name."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not path.name.endswith(OPEN_SUFFIX):
            raise
        data = path.with_name(path.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX).read_bytes()
    return data[:data.rfind(b"\n") + 1]


def read_landed(root: Path, include_open: bool = True) -> Iterator[dict[str, Any]]:
    """Every landed line as a dict; an ``.open`` file is read up to its last complete line."""
    for path in landing_files(root, include_open):
        for line in complete_bytes(path).splitlines():
            yield json.loads(line)
