"""Reading the Tracksolid push landing files: the receiver writes them, the push assets read them.

The contract is the receiver's (``fleet_pipeline.push.landing``, which lists and reads the files;
docs/vendors/tracksolid.md, "Push"): ``<FLEET_DATA_DIR>/push_landing/<received UTC
day>/*.jsonl``, append-only, one JSON object a line, ``{"msg_id", "push_path", "received_at",
"item"}``; a file still being written ends in ``.jsonl.open`` and is read up to its last complete
line. The same message may be landed twice (a vendor retry): the load de-duplicates on ``msg_id``.

A line is handed over as a push item (``rows``) with its envelope beside it (``extra``, see
``records.typed_frame``), so a rejected message is kept whole. A line that cannot be read (not
JSON, no item, no ``msg_id``) is not skipped: it becomes a row whose ``msg_id`` is flagged with the
reason, which validation rejects, filed under the day it was landed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fleet_pipeline.ingest.http import CallStats
from fleet_pipeline.ingest.records import INVALID_FIELDS
from fleet_pipeline.push.landing import complete_bytes, day_files
from fleet_pipeline.sources.tracksolid.push_schemas import LANDING_DAY, MSG_ID, PUSH_PATH, RECEIVED_AT

# The item as received, for the tables that keep it whole.
ITEM = "_item"
# Lines handed over per chunk: typed and validated one chunk at a time (source_assets.load).
CHUNK_LINES = 50_000
# How much of an unreadable line the rejects table keeps.
SHOWN_CHARS = 300
# A cheap look at a line's push path, so a table's load parses only its own lines as JSON.
_PUSH_PATH_FIELD = re.compile(r'"push_path"\s*:\s*"([^"\\]*)"')


def landing_days_for(days: Sequence[date], late_data_days: int) -> list[date]:
    """The landing days that can hold messages of ``days``: from the day before the first (a device
    clock a little ahead of the receiver's) to ``late_data_days`` after the last (late messages)."""
    first, last = min(days) - timedelta(days=1), max(days) + timedelta(days=late_data_days)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def landed_files(landing_dir: Path, day: date, include_open: bool = True) -> list[Path]:
    """The closed (and, by default, still open) landing files of one received day, by name."""
    return day_files(landing_dir, day.isoformat(), include_open)


def complete_lines(path: Path) -> list[str]:
    """The file's complete lines (an open file's half-written tail left for the next read)."""
    return [line for line in complete_bytes(path).decode("utf-8", errors="replace").splitlines() if line.strip()]


def push_path_of(line: str) -> str | None:
    found = _PUSH_PATH_FIELD.search(line)
    return found.group(1) if found else None


@dataclass
class LandedChunk:
    """Push items (``rows``) and, per item, its envelope (``extra``), ready for ``typed_frame``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)


def _unreadable(line: str, day: date, path: str | None, reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
    shown = line[:SHOWN_CHARS]
    return ({"_line": line, INVALID_FIELDS: {MSG_ID: f"not a landed message: {reason}"}},
            {MSG_ID: shown, PUSH_PATH: path, RECEIVED_AT: None, LANDING_DAY: day.isoformat()})


def parse_line(line: str, day: date, keep_item: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """One landed line as (item, envelope); an unreadable line as a row validation will reject."""
    try:
        landed = json.loads(line)
    except ValueError as error:
        reason = getattr(error, "msg", str(error))
        return _unreadable(line, day, push_path_of(line), f"not valid JSON ({reason})")
    if not isinstance(landed, dict):
        return _unreadable(line, day, None, f"a JSON {type(landed).__name__}, not an object")
    item, msg_id = landed.get("item"), landed.get("msg_id")
    if not isinstance(item, dict):
        return _unreadable(line, day, landed.get("push_path"), "its 'item' is missing or not an object")
    if not isinstance(msg_id, str):
        return _unreadable(line, day, landed.get("push_path"), "its 'msg_id' is missing")
    envelope = {MSG_ID: msg_id, PUSH_PATH: landed.get("push_path"), RECEIVED_AT: landed.get("received_at"),
                LANDING_DAY: day.isoformat()}
    if keep_item:
        envelope[ITEM] = item
    return item, envelope


@dataclass
class LandingReader:
    """What a push asset reads instead of a vendor API: the landing files of some received days.

    ``stats`` stays at zero calls (no vendor is called); the counters say what was read.
    """

    landing_dir: Path
    late_data_days: int
    stats: CallStats = field(default_factory=CallStats)
    files_read: int = 0
    lines_read: int = 0
    messages: int = 0
    unreadable: int = 0

    def chunks(self, days: Sequence[date], wanted: Callable[[str | None], bool],
               keep_item: bool = False) -> Iterator[LandedChunk]:
        """The lines whose push path ``wanted`` accepts, of every landing day that can hold a
        message of ``days``, in chunks of :data:`CHUNK_LINES` (always at least one, maybe empty)."""
        chunk = LandedChunk()
        for landed_on in landing_days_for(days, self.late_data_days):
            for path in landed_files(self.landing_dir, landed_on):
                lines = complete_lines(path)
                self.files_read += 1
                self.lines_read += len(lines)
                for line in lines:
                    if not wanted(push_path_of(line)):
                        continue
                    item, envelope = parse_line(line, landed_on, keep_item)
                    self.messages += 1
                    self.unreadable += INVALID_FIELDS in item
                    chunk.rows.append(item)
                    chunk.extra.append(envelope)
                    if len(chunk.rows) >= CHUNK_LINES:
                        yield chunk
                        chunk = LandedChunk()
        if chunk.rows or not self.messages:
            yield chunk

    def metadata(self) -> dict[str, int]:
        return {"landing_files_read": self.files_read, "landing_lines_read": self.lines_read,
                "landed_messages": self.messages, "unreadable_lines": self.unreadable}

    def close(self) -> None:
        """Nothing to release: files are read whole and closed as they are read."""
