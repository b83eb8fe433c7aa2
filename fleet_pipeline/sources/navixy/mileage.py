"""Daily mileage (``tracker/stats/mileage/read``): local-day chunks the platform accepts, read
and halved on 211.

The platform keys its days in user time, so a chunk runs from local 00:00 of its first day to
local 00:00 after its last (23:59:59 would lose the last second of driving).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

from fleet_pipeline.ingest.http import VendorResponseError
from fleet_pipeline.sources.navixy.endpoints import MILEAGE_READ, VENDOR
from fleet_pipeline.sources.navixy.errors import TimeSpanTooBig
from fleet_pipeline.sources.navixy.limits import MILEAGE_MAX_DAYS, MILEAGE_MAX_SPAN
from fleet_pipeline.sources.navixy.timezones import UserClock

logger = logging.getLogger("fleet_pipeline.sources.navixy")

Call = Callable[[str, dict[str, Any]], dict[str, Any]]


def mileage_chunks(clock: UserClock, first: date, last: date) -> Iterator[tuple[date, date]]:
    """Chunks of at most 31 local days whose real duration is also at most 31 days.

    The docs do not say how P31D is measured; 31 local days over the autumn change last 31 days
    and 1 hour, so such a chunk gets 30 days.
    """
    start = first
    while start <= last:
        days = min(MILEAGE_MAX_DAYS, (last - start).days + 1)
        while days > 1 and _mileage_span(clock, start, days) > MILEAGE_MAX_SPAN:
            days -= 1
        yield start, start + timedelta(days=days - 1)
        start += timedelta(days=days)


def _mileage_span(clock: UserClock, start: date, days: int) -> timedelta:
    return clock.local_midnight(start + timedelta(days=days)) - clock.local_midnight(start)


def mileage_range(call: Call, clock: UserClock, batch: list[int], first: date, last: date
                  ) -> list[dict[str, Any]]:
    """The mileage of ``batch`` over the local days ``first..last``, halved while 211 says too long."""
    try:
        return _mileage_call(call, clock, batch, first, last)
    except TimeSpanTooBig:
        if first >= last:
            raise
    middle = first + timedelta(days=(last - first).days // 2)
    logger.info("navixy %s: %s..%s too long (211); halving", MILEAGE_READ, first, last)
    return (mileage_range(call, clock, batch, first, middle)
            + mileage_range(call, clock, batch, middle + timedelta(days=1), last))


def _mileage_call(call: Call, clock: UserClock, batch: list[int], first: date, last: date
                  ) -> list[dict[str, Any]]:
    payload = call(MILEAGE_READ, {
        "trackers": batch,
        "from": clock.to_param(clock.local_midnight(first)),
        "to": clock.to_param(clock.local_midnight(last + timedelta(days=1))),
    })
    if payload.get("limit_exceeded"):
        logger.warning(
            "navixy %s: %s..%s reaches beyond the storage period (limit_exceeded); "
            "days before it are missing", MILEAGE_READ, first, last,
        )
    return _mileage_rows(payload, first, last)


def _mileage_rows(payload: dict[str, Any], first: date, last: date) -> list[dict[str, Any]]:
    """``{tracker_id, local_date, mileage_km}`` per tracker and day of ``first..last``.

    A key for the day after the chunk, which the platform may add, is dropped.
    """
    result = payload.get("result") or {}
    if not isinstance(result, dict):
        raise VendorResponseError(VENDOR, MILEAGE_READ, "'result' is not an object")
    rows = []
    for tracker, days in result.items():
        for day_text, value in (days or {}).items():
            try:
                day = date.fromisoformat(str(day_text)[:10])
            except ValueError:
                raise VendorResponseError(
                    VENDOR, MILEAGE_READ, f"day key {str(day_text)[:20]!r} is not a date"
                ) from None
            if not first <= day <= last:
                continue
            km = value.get("mileage") if isinstance(value, dict) else None
            rows.append({
                "tracker_id": int(tracker),
                "local_date": day,
                "mileage_km": None if km is None else float(km),
            })
    return rows
