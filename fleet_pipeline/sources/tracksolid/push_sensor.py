"""When pushed messages are loaded: the daily load, and a sensor for landing files closed since.

The daily schedule's ``all_daily`` runs load yesterday and the late-data window like every source.
Between them, the ``tracksolid_push_landing`` sensor looks for landing files closed since its last
tick (its cursor: the closed files seen per landing day) and re-loads each past day they hold
messages of; a day still in progress (today) is not a partition yet and is left to the daily run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dagster import (
    AssetsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from fleet_pipeline import settings
from fleet_pipeline.automation.freshness import without_freshness_checks
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.automation.schedules import REASON_TAG, automation_status
from fleet_pipeline.ingest.records import _lookup
from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR
from fleet_pipeline.push.landing import CLOSED_SUFFIX
from fleet_pipeline.sources.tracksolid.push_assets import PUSH_TABLES
from fleet_pipeline.sources.tracksolid.push_landing import complete_lines, landed_files, parse_line

PUSH_LOAD_JOB = "tracksolid_push_load"
PUSH_SENSOR = "tracksolid_push_landing"
# A closed file appears in today's folder (or yesterday's, around midnight); older folders are
# watched for as long as the late-data window reaches back, plus these days.
WATCHED_EXTRA_DAYS = 2
SENSOR_INTERVAL_S = 60
_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})")

# Per push path, the item fields its table takes the message's own time from, in order.
_TIME_SOURCES: dict[str, tuple[str, ...]] = {
    path: next(col.sources for col in table.columns if col.name == table.time_column)
    for table in PUSH_TABLES for path in table.paths
}


def message_day(item: Mapping[str, Any], push_path: str | None) -> date | None:
    """The UTC day of a pushed item's own time, when it reads as a date (else None)."""
    for source in _TIME_SOURCES.get(push_path or "", ()):
        value = _lookup(item, source)
        if value is None:
            continue
        text = str(value).strip()
        if text.isdigit() and len(text) in (10, 13):
            return datetime.fromtimestamp(int(text[:10]), timezone.utc).date()
        found = _DAY.match(text)
        if found:
            try:
                return date.fromisoformat(found.group(1))
            except ValueError:
                return None
    return None


def partitions_of(path: Path, landed_on: date, late_data_days: int) -> set[date]:
    """The partitions a landing file's messages belong to (``push_assets.file_by_message_day``'s rule)."""
    days = set()
    for line in complete_lines(path):
        item, envelope = parse_line(line, landed_on)
        own = message_day(item, envelope.get("_push_path"))
        usable = own is not None and landed_on - timedelta(days=late_data_days) <= own <= landed_on + timedelta(days=1)
        days.add(own if usable else landed_on)
    return days


def watched_days(today: date, late_data_days: int) -> list[date]:
    return [today - timedelta(days=n) for n in range(late_data_days + WATCHED_EXTRA_DAYS, -1, -1)]


def landing_requests(landing_dir: Path, cursor: str | None, today: date, late_data_days: int,
                     first_partition: date) -> tuple[list[RunRequest], str]:
    """A run request per past partition that files closed since ``cursor`` hold messages of, and
    the new cursor (the closed files of every watched landing day)."""
    seen: dict[str, list[str]] = json.loads(cursor) if cursor else {}
    now_seen: dict[str, list[str]] = {}
    touched: dict[date, list[str]] = {}
    for landed_on in watched_days(today, late_data_days):
        closed = [p for p in landed_files(landing_dir, landed_on, include_open=False) if p.name.endswith(CLOSED_SUFFIX)]
        key = landed_on.isoformat()
        now_seen[key] = [p.name for p in closed]
        known = set(seen.get(key, ()))
        for path in closed:
            if path.name in known:
                continue
            for day in partitions_of(path, landed_on, late_data_days):
                if first_partition <= day < today:
                    touched.setdefault(day, []).append(f"{key}/{path.name}")
    requests = []
    for day, files in sorted(touched.items()):
        digest = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16]
        requests.append(RunRequest(
            run_key=f"{PUSH_LOAD_JOB}:{day.isoformat()}:{digest}",
            partition_key=day.isoformat(),
            tags={REASON_TAG: f"{len(files)} push landing file(s) closed since the last load hold messages "
                              f"of {day.isoformat()} (first: {files[0]})"},
        ))
    return requests, json.dumps(now_seen, sort_keys=True)


def build_push_load_job(assets: Sequence[AssetsDefinition]):  # noqa: ANN201 (dagster does not export the type)
    return define_asset_job(
        PUSH_LOAD_JOB,
        selection=without_freshness_checks(assets),
        partitions_def=daily_partitions,
        executor_def=SOURCE_EXECUTOR,
        description="One UTC day of every Tracksolid push table, from the landing files that can hold it.",
    )


def build_push_landing_sensor(job: Any, landing_dir: str, late_data_days: int) -> SensorDefinition:
    @sensor(
        name=PUSH_SENSOR,
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=automation_status()[1],
        description="Every minute: re-loads the past days whose messages are in push landing files "
        "closed since the last tick (late messages); today's are loaded by the daily run.",
    )
    def tracksolid_push_landing(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        today = datetime.now(timezone.utc).date()
        requests, cursor = landing_requests(Path(landing_dir), context.cursor, today, late_data_days,
                                            date.fromisoformat(settings.partitions_start()))
        if not requests:
            context.update_cursor(cursor)
            return SkipReason("no closed landing file since the last tick holds messages of a past day")
        return SensorResult(run_requests=requests, cursor=cursor)

    return tracksolid_push_landing
