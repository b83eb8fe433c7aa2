"""Naive UTC, the one time representation every vendor client hands on, and the windows clients
cut a time range into to stay within a vendor's limit per call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_naive_utc(value: datetime) -> datetime:
    """Naive UTC from a naive-UTC or aware datetime (aware values are converted)."""
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def windows(begin: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """``[begin, end)`` as consecutive windows of at most ``span``, the last one shorter."""
    cursor = begin
    while cursor < end:
        stop = min(cursor + span, end)
        yield cursor, stop
        cursor = stop
