"""Partitions shared by every source: one partition per UTC day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from dagster import DailyPartitionsDefinition

from fleet_pipeline.settings import partitions_start

# end_offset=1 makes today's (still growing) partition selectable: schedules re-load it later.
daily_partitions = DailyPartitionsDefinition(start_date=partitions_start(), timezone="UTC", end_offset=1)


def partition_day(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The half-open [00:00, next 00:00) UTC bounds of one day, for clients that take [begin, end)."""
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1)


def day_window(day: date) -> tuple[datetime, datetime]:
    """The inclusive [00:00:00, 23:59:59] window vendor APIs take for one UTC day."""
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1) - timedelta(seconds=1)
