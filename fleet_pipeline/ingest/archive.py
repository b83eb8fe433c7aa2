"""The raw archive: every vendor answer a load was made of, kept so that it can be loaded again.

Vendors keep about three months of history and some allow few calls an hour, so a typing or
validation fix could otherwise only reach what the vendor still serves. Each step that loads a
raw table writes the answers it read (``fleet_pipeline.ingest.http.recording``) to one file,
before its partitions are swapped:

    <root>/<vendor>/<table>/<partition>/<run id>.parquet
    <root>/<vendor>/<table>/<partition>/<account>/<run id>.parquet

``<partition>`` is the day the step replaced (``2026-11-20``), or ``first_last``
(``2026-11-01_2026-11-30``) for a run over several days; a snapshot's partition is the day it was
taken on. A re-run of a partition adds a file (a new run id): the latest is what the warehouse holds.
A vendor's account other than ``default`` (``fleet_pipeline.sources.accounts``) has a folder of its
own in the partition: two accounts' steps of one run write the same table and days, and each is
replayed from its own answers alone (their redacted requests can be identical). The ``default``
account's files stay where they were before there were accounts.

Why Parquet with zstd: polars writes it (no new dependency; the ``zstandard`` module is not in the
lock), Parquet compresses the repetitive JSON bodies column by column as well as a ``.jsonl.zst``
file would, one file per step is published whole (written under a scratch name, fsync'd, renamed)
so a crash never leaves half an archive, and the archive can be read with plain SQL
(``select call, body from 'data/archive/sandbox/tracksolid/alarms/*/*.parquet'``). A local folder
is written with plain file operations; an object store (the distributed mode keeps the archive
beside the lake's data path, ``fleet_pipeline.settings.archive_root``) through ``pyarrow.fs``,
imported only then: pyarrow costs a writing step ~40 MiB.

Nothing secret is written: requests and bodies are redacted with every secret the client
registered, volatile request fields (timestamps, signatures) are left out, and headers are not kept.
Retention (``FLEET_ARCHIVE_RETENTION_DAYS``) is applied whenever a file is written: the
partitions of that vendor and table whose last day is older than the retention go.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from fleet_pipeline.ingest.http.recording import Answer, AnswerBook, MissingAnswer
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT

SUFFIX = ".parquet"
# zstd at its default level (3). Level 9 made the archive a fifth smaller (6.5 against 8.0 KB a
# device-day at 200 devices) but took three times as long and peaked ~30 MiB higher in the track
# points step (a Navixy day of 1,000 devices: 1.4 against 0.4 s, 397 against 368 MiB), and the
# archive is written after the step's last call, while the vendor's budget goes unused.
# No statistics: min/max of a body would store two whole answers again in the footer, the size of a
# small step's whole file, and a file is one step: there is nothing to skip within it.
COMPRESSION = {"compression": "zstd", "compression_level": 3, "statistics": False}
# Answers per row group, by the size of their bodies: a step's answers (a day of track points is
# hundreds of MB of JSON) are written a group at a time, never held all at once.
ROW_GROUP_BODY_BYTES = 4 * 1024 * 1024
# Rows per row group of the archive file (an answer is a row): bounds what the compressing writer
# holds when the bodies are large (a tracker's day of points is ~100 KB).
ROWS_PER_ROW_GROUP = 64
_PARTITION = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:_(\d{4}-\d{2}-\d{2}))?$")
_SCHEMA = {"call": pl.String, "http_method": pl.String, "path": pl.String, "request": pl.String,
           "status": pl.Int32, "body": pl.String, "received_at": pl.Datetime("us")}


def partition_name(days: Sequence[date]) -> str:
    first, last = min(days), max(days)
    return first.isoformat() if first == last else f"{first.isoformat()}_{last.isoformat()}"


@dataclass(frozen=True)
class ArchivedStep:
    """One archive file: the answers one step of one run read for one table."""

    vendor: str
    table: str
    first: date
    last: date
    run_id: str
    path: str
    size: int
    # When the file was written: of two archives of a day, the later is what the warehouse holds.
    written_at: datetime | None = None
    # The vendor account whose step read the answers.
    account: str = DEFAULT_ACCOUNT

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class StepAnswers:
    """What one archive file holds: when the step extracted, and its answers in arrival order."""

    extracted_at: datetime
    answers: list[Answer]


@dataclass(frozen=True)
class _Entry:
    """A file or folder found under the archive's root."""

    path: str
    base_name: str
    is_file: bool
    size: int
    mtime: datetime | None


class _LocalFolder:
    """The archive in a folder of this machine: plain file operations, so that a step that writes
    it does not load pyarrow (~40 MiB) for them."""

    def __init__(self, root: str) -> None:
        self.base = os.path.abspath(root)

    def list(self, folder: str, recursive: bool) -> list[_Entry]:
        if not os.path.isdir(folder):
            return []
        found = []
        for current, folders, files in os.walk(folder):
            for name in [*folders, *files]:
                path = os.path.join(current, name)
                stat = os.stat(path)
                found.append(_Entry(path, name, name in files, stat.st_size,
                                    datetime.fromtimestamp(stat.st_mtime, timezone.utc)))
            if not recursive:
                break
        return found

    def delete_dir(self, folder: str) -> None:
        shutil.rmtree(folder)

    def publish(self, written: Path, folder: str, path: str) -> None:
        """Move the finished file into place atomically (it was written in the same folder)."""
        os.replace(written, path)
        _fsync_dir(folder)

    def scratch_parent(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        return folder

    def readable(self, path: str) -> bytes | str:
        return path


class _ObjectStore:
    """The archive in an object store (``s3://``, ``gs://``...), through ``pyarrow.fs``."""

    def __init__(self, root: str) -> None:
        import pyarrow.fs as pafs

        self.pafs = pafs
        self.fs, self.base = pafs.FileSystem.from_uri(root)

    def list(self, folder: str, recursive: bool) -> list[_Entry]:
        if self.fs.get_file_info(folder).type != self.pafs.FileType.Directory:
            return []
        return [_Entry(info.path, info.base_name, info.type == self.pafs.FileType.File, info.size or 0, info.mtime)
                for info in self.fs.get_file_info(self.pafs.FileSelector(folder, recursive=recursive))]

    def delete_dir(self, folder: str) -> None:
        self.fs.delete_dir(folder)

    def publish(self, written: Path, folder: str, path: str) -> None:
        """Upload the finished file: an object becomes visible only when its upload is complete."""
        self.fs.create_dir(folder, recursive=True)
        with written.open("rb") as source, self.fs.open_output_stream(path) as sink:
            shutil.copyfileobj(source, sink, 8 * 1024 * 1024)

    def scratch_parent(self, folder: str) -> str | None:
        return None  # the system's temporary folder

    def readable(self, path: str) -> bytes | str:
        with self.fs.open_input_file(path) as source:
            return source.read()


class Archive:
    """The archive under one root (a folder, or an object-store URL ``pyarrow.fs`` understands)."""

    def __init__(self, root: str) -> None:
        self.root = root
        remote = "://" in root and not root.startswith("file://")
        self._storage: Any = _ObjectStore(root) if remote else _LocalFolder(root.removeprefix("file://"))

    def _join(self, *parts: str) -> str:
        return "/".join([self._storage.base.rstrip("/"), *parts])

    # -- writing ------------------------------------------------------------------------------

    def write(self, vendor: str, table: str, days: Sequence[date], run_id: str, extracted_at: datetime,
              answers: Iterable[Answer], account: str = DEFAULT_ACCOUNT) -> ArchivedStep:
        """One step's answers, durably, as ``<vendor>/<table>/<partition>[/<account>]/<run_id>.parquet``.

        polars pulls the answers a group at a time while it compresses them into the file (never
        all in memory), in a scratch folder first; a crash leaves no file under the final name,
        only a scratch folder starting with a dot, which no reader lists."""
        partition = partition_name(days)
        folder = self._join(vendor, table, partition, *([] if account == DEFAULT_ACCOUNT else [account]))
        path = f"{folder}/{run_id}{SUFFIX}"
        metadata = {"vendor": vendor, "table": table, "run_id": run_id, "account": account,
                    "extracted_at": extracted_at.isoformat()}
        with tempfile.TemporaryDirectory(prefix=f".{run_id}.", dir=self._storage.scratch_parent(folder)) as scratch:
            written = Path(scratch) / f"{uuid.uuid4().hex}{SUFFIX}"
            _streamed(answers).sink_parquet(written, **COMPRESSION, row_group_size=ROWS_PER_ROW_GROUP,
                                            metadata=metadata, sync_on_close="all")
            size = written.stat().st_size
            self._storage.publish(written, folder, path)
        return ArchivedStep(vendor, table, min(days), max(days), run_id, path, size,
                            datetime.now(timezone.utc), account)

    def prune(self, vendor: str, table: str, today: date, retention_days: int) -> list[str]:
        """Delete the partitions of ``vendor``/``table`` whose last day is more than
        ``retention_days`` before ``today`` (0 keeps everything); the folders removed."""
        if retention_days <= 0:
            return []
        oldest_kept = today - timedelta(days=retention_days)
        removed = []
        for entry in self._storage.list(self._join(vendor, table), recursive=False):
            match = _PARTITION.match(entry.base_name)
            if entry.is_file or not match:
                continue
            last = date.fromisoformat(match.group(2) or match.group(1))
            if last < oldest_kept:
                self._storage.delete_dir(entry.path)
                removed.append(entry.path)
        return removed

    # -- reading ------------------------------------------------------------------------------

    def steps(self, vendor: str, table: str | None = None, account: str | None = None) -> list[ArchivedStep]:
        """Every archive file of ``vendor`` (of one ``table``, of one ``account``), oldest partition first."""
        found = []
        for entry in self._storage.list(self._join(vendor, table) if table else self._join(vendor), recursive=True):
            if not entry.is_file or not entry.base_name.endswith(SUFFIX):
                continue
            parts = entry.path[len(self._join(vendor)) + 1:].split("/")
            if any(part.startswith(".") for part in parts):
                continue  # a step's scratch folder, being written
            # <table>/<partition>/<run>, or <table>/<partition>/<account>/<run> (module docstring)
            match = _PARTITION.match(parts[1]) if len(parts) in (3, 4) else None
            if not match:
                continue
            owner = parts[2] if len(parts) == 4 else DEFAULT_ACCOUNT
            if account is not None and owner != account:
                continue
            first = date.fromisoformat(match.group(1))
            last = date.fromisoformat(match.group(2) or match.group(1))
            found.append(ArchivedStep(vendor, parts[0], first, last, parts[-1][:-len(SUFFIX)], entry.path,
                                      entry.size, entry.mtime, owner))
        return sorted(found, key=lambda step: (step.first, step.last, step.table, step.path))

    def read(self, path: str) -> StepAnswers:
        source = self._storage.readable(path)
        metadata = pl.read_parquet_metadata(source)
        frame = pl.read_parquet(source, columns=list(_SCHEMA))
        answers = [Answer(**row) for row in frame.iter_rows(named=True)]
        return StepAnswers(datetime.fromisoformat(metadata["extracted_at"]), answers)


def _frame(answers: Sequence[Answer]) -> pl.DataFrame:
    return pl.DataFrame({name: [getattr(a, name) for a in answers] for name in _SCHEMA}, schema=_SCHEMA)


def _streamed(answers: Iterable[Answer]) -> pl.LazyFrame:
    """``answers`` as a lazy frame that polars pulls a group at a time while it writes the file."""
    groups = iter(_row_groups(answers))
    pulled = False

    def source(_columns: Any, _predicate: Any, _n_rows: Any, _batch_size: Any) -> Iterator[pl.DataFrame]:
        nonlocal pulled
        if pulled:  # the answers can be taken once: a second pull would write an empty archive
            raise RuntimeError("the archive's answers were read twice")
        pulled = True
        for group in groups:
            yield _frame(group)

    return register_io_source(source, schema=_SCHEMA)


def _row_groups(answers: Iterable[Answer]) -> Iterator[list[Answer]]:
    """``answers`` in consecutive groups of about :data:`ROW_GROUP_BODY_BYTES` of bodies."""
    group: list[Answer] = []
    size = 0
    for answer in answers:
        group.append(answer)
        size += len(answer.body)
        if size >= ROW_GROUP_BODY_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _fsync_dir(folder: str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ArchiveReplay:
    """The answers of one archived run of a vendor's account, served to the same calls made again.

    The answers of the run's own files come first; a call they do not hold (a token the original
    step took from the token cache, fetched by an earlier run) is looked up in the account's other
    files, newest first, read only when such a call happens.
    """

    def __init__(self, archive: Archive, vendor: str, run_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self.archive = archive
        self.vendor = vendor
        self.run_id = run_id
        steps = archive.steps(vendor, account=account)
        own = [step for step in steps if step.run_id == run_id]
        if not own:
            owner = "" if account == DEFAULT_ACCOUNT else f" account {account!r}"
            raise MissingAnswer(f"the archive {archive.root} holds no answer of {vendor}{owner} run {run_id}")
        self._book = AnswerBook(answer for step in own for answer in archive.read(step.path).answers)
        self._others = sorted((step for step in steps if step.run_id != run_id), key=lambda s: s.last,
                              reverse=True)
        self._others_read = False
        self._lock = threading.Lock()

    def answer(self, key: str) -> tuple[int, bytes]:
        found = self._book.take(key)
        if found is None:
            with self._lock:
                if not self._others_read:
                    self._others_read = True
                    for answer in archive_answers(self.archive, self._others):
                        if answer.key not in self._book:
                            self._book.add(answer)
            found = self._book.take(key)
        if found is None:
            raise MissingAnswer(f"no archived answer for this call in run {self.run_id} or any other "
                                f"{self.vendor} archive file: the code now asks something the original "
                                f"run did not (request {key[:300]})")
        return found.status, found.body.encode("utf-8")


def archive_answers(archive: Archive, steps: Iterable[ArchivedStep]) -> Iterable[Answer]:
    for step in steps:
        yield from archive.read(step.path).answers
