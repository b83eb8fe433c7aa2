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

Why Parquet with zstd: pyarrow and DuckDB are already here (no new dependency; the ``zstandard``
module is not in the lock), Parquet compresses the repetitive JSON bodies column by column as well
as a ``.jsonl.zst`` file would, one file per step is written whole (atomically: a temporary name,
fsync, rename) so a crash never leaves half an archive, and the archive can be read with plain SQL
(``select call, body from 'data/archive/sandbox/tracksolid/alarms/*/*.parquet'``). Through
``pyarrow.fs`` the same code writes a local folder or an object store (the distributed mode keeps
the archive beside the lake's data path, ``fleet_pipeline.settings.archive_root``).

Nothing secret is written: requests and bodies are redacted with every secret the client
registered, volatile request fields (timestamps, signatures) are left out, and headers are not kept.
Retention (``FLEET_ARCHIVE_RETENTION_DAYS``) is applied whenever a file is written: the
partitions of that vendor and table whose last day is older than the retention go.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fleet_pipeline.ingest.http.recording import Answer, AnswerBook, MissingAnswer
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT

SUFFIX = ".parquet"
# zstd 9: on a day of track points about a tenth smaller than the default level for a few ms more a
# megabyte; 19 gains another tenth at twenty times the CPU, too much for the largest steps.
# Statistics only where they help a query: min/max of a body would store two whole answers again
# in the footer, the size of a small step's whole file.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9,
                   "write_statistics": ["call", "http_method", "status", "received_at"]}
_PARTITION = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:_(\d{4}-\d{2}-\d{2}))?$")
_SCHEMA = pa.schema([
    ("call", pa.string()), ("http_method", pa.string()), ("path", pa.string()), ("request", pa.string()),
    ("status", pa.int32()), ("body", pa.string()), ("received_at", pa.timestamp("us")),
])


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


class Archive:
    """The archive under one root (a folder, or an object-store URL ``pyarrow.fs`` understands)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._fs, self._base = pafs.FileSystem.from_uri(root if "://" in root else os.path.abspath(root))
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    def _join(self, *parts: str) -> str:
        return "/".join([self._base.rstrip("/"), *parts])

    # -- writing ------------------------------------------------------------------------------

    def write(self, vendor: str, table: str, days: Sequence[date], run_id: str, extracted_at: datetime,
              answers: Sequence[Answer], account: str = DEFAULT_ACCOUNT) -> ArchivedStep:
        """One step's answers, durably, as ``<vendor>/<table>/<partition>[/<account>]/<run_id>.parquet``."""
        partition = partition_name(days)
        folder = self._join(vendor, table, partition, *([] if account == DEFAULT_ACCOUNT else [account]))
        path = f"{folder}/{run_id}{SUFFIX}"
        columns = {name: [getattr(a, name) for a in answers] for name in _SCHEMA.names}
        frame = pa.Table.from_pydict(columns, schema=_SCHEMA).replace_schema_metadata(
            {"vendor": vendor, "table": table, "run_id": run_id, "account": account,
             "extracted_at": extracted_at.isoformat()})
        self._fs.create_dir(folder, recursive=True)
        if self._local:
            temporary = f"{folder}/.{run_id}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as sink:
                    pq.write_table(frame, sink, **PARQUET_OPTIONS)
                    sink.flush()
                    os.fsync(sink.fileno())
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
            _fsync_dir(folder)
        else:  # an object store's PUT is atomic already
            pq.write_table(frame, path, filesystem=self._fs, **PARQUET_OPTIONS)
        info = self._fs.get_file_info(path)
        return ArchivedStep(vendor, table, min(days), max(days), run_id, path, info.size or 0, info.mtime, account)

    def prune(self, vendor: str, table: str, today: date, retention_days: int) -> list[str]:
        """Delete the partitions of ``vendor``/``table`` whose last day is more than
        ``retention_days`` before ``today`` (0 keeps everything); the folders removed."""
        if retention_days <= 0:
            return []
        oldest_kept = today - timedelta(days=retention_days)
        removed = []
        for info in self._list(self._join(vendor, table), recursive=False):
            match = _PARTITION.match(info.base_name)
            if info.type != pafs.FileType.Directory or not match:
                continue
            last = date.fromisoformat(match.group(2) or match.group(1))
            if last < oldest_kept:
                self._fs.delete_dir(info.path)
                removed.append(info.path)
        return removed

    # -- reading ------------------------------------------------------------------------------

    def _list(self, folder: str, recursive: bool = True) -> list[pafs.FileInfo]:
        if self._fs.get_file_info(folder).type != pafs.FileType.Directory:
            return []
        return self._fs.get_file_info(pafs.FileSelector(folder, recursive=recursive))

    def steps(self, vendor: str, table: str | None = None, account: str | None = None) -> list[ArchivedStep]:
        """Every archive file of ``vendor`` (of one ``table``, of one ``account``), oldest partition first."""
        found = []
        for info in self._list(self._join(vendor, table) if table else self._join(vendor)):
            if info.type != pafs.FileType.File or not info.base_name.endswith(SUFFIX):
                continue
            parts = info.path[len(self._join(vendor)) + 1:].split("/")
            # <table>/<partition>/<run>, or <table>/<partition>/<account>/<run> (module docstring)
            match = _PARTITION.match(parts[1]) if len(parts) in (3, 4) else None
            if not match:
                continue
            owner = parts[2] if len(parts) == 4 else DEFAULT_ACCOUNT
            if account is not None and owner != account:
                continue
            first = date.fromisoformat(match.group(1))
            last = date.fromisoformat(match.group(2) or match.group(1))
            found.append(ArchivedStep(vendor, parts[0], first, last, parts[-1][:-len(SUFFIX)], info.path,
                                      info.size or 0, info.mtime, owner))
        return sorted(found, key=lambda step: (step.first, step.last, step.table, step.path))

    def read(self, path: str) -> StepAnswers:
        frame = pq.read_table(path, filesystem=self._fs)
        metadata = {k.decode(): v.decode() for k, v in (frame.schema.metadata or {}).items()}
        answers = [Answer(**row) for row in frame.to_pylist()]
        return StepAnswers(datetime.fromisoformat(metadata["extracted_at"]), answers)


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
