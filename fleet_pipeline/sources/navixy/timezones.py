"""The user's time zone at the client's edge: ISO date-times with offsets out, naive UTC in.

Navixy reads and renders every date-time in the USER's time zone. The client asks for ISO 8601
mode on every call (``NVX-ISO-DateTime`` header and ``iso_datetime`` body flag), sends every
date-time with its explicit UTC offset and converts every date-time it receives to naive UTC.
Why ISO mode and not local strings: on the autumn DST day (2026-10-25 in Europe/Paris) the local
hour 02:00-02:59 happens twice, so a plain ``yyyy-MM-dd HH:mm:ss`` names two instants and no
rule recovers which one a point or an event belongs to (ordering fails as soon as one of the two
hours has no data). With offsets, the instant is exact in both directions. A date-time that
arrives WITHOUT an offset means the platform ignored ISO mode; it is refused
(``VendorResponseError``) instead of guessed, so such a platform fails on its first call, not
silently once a year.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_pipeline.ingest.http import VendorResponseError
from fleet_pipeline.ingest.records import INVALID_FIELDS
from fleet_pipeline.sources.navixy.endpoints import USER_GET_INFO, VENDOR
from fleet_pipeline.sources.time_windows import as_naive_utc


def user_zone(payload: dict[str, Any]) -> ZoneInfo:
    """The IANA zone of a ``user/get_info`` answer."""
    info = payload.get("user_info")
    zone_name = info.get("time_zone") if isinstance(info, dict) else None
    if not zone_name:
        raise VendorResponseError(VENDOR, USER_GET_INFO, "answer carries no user_info.time_zone")
    try:
        return ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise VendorResponseError(
            VENDOR, USER_GET_INFO, f"unknown time zone {str(zone_name)[:60]!r}"
        ) from None


class UserClock:
    """Converts between naive UTC and the API's date-time strings for one user's time zone."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def to_param(self, utc: datetime) -> str:
        """``2026-10-25T02:30:00+01:00``: local wall time plus the offset that makes it exact."""
        aware = as_naive_utc(utc).replace(tzinfo=timezone.utc).astimezone(self.zone)
        return aware.isoformat(timespec="seconds")

    def local_midnight(self, day: date) -> datetime:
        """Naive UTC of 00:00 local on ``day`` (midnight exists every day in every IANA zone
        the platform offers; a zone that skips it would map to the first instant after)."""
        local = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        return local.astimezone(timezone.utc).replace(tzinfo=None)

    def local_day_window(self, day: date) -> tuple[datetime, datetime]:
        """The UTC ``[begin, end)`` of a local day: 23 h, 24 h or 25 h long."""
        return self.local_midnight(day), self.local_midnight(day + timedelta(days=1))

    def local_date(self, utc: datetime) -> date:
        return as_naive_utc(utc).replace(tzinfo=timezone.utc).astimezone(self.zone).date()

    def parse(self, value: object, method: str, name: str) -> datetime:
        """A date-time from the API as naive UTC; refuses a value without an offset (see module
        docstring: the platform ignored ISO mode and the instant may be ambiguous)."""
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise VendorResponseError(
                VENDOR, method, f"field {name!r} is not a date-time: {text[:40]!r}"
            ) from None
        if parsed.tzinfo is None:
            raise VendorResponseError(
                VENDOR, method,
                f"field {name!r} came without a UTC offset ({text[:40]!r}): the platform ignored "
                "ISO date-time mode, and local times cannot be converted safely across DST",
            )
        return parsed.astimezone(timezone.utc).replace(tzinfo=None)


def convert_times(
    node: Any, paths: Iterable[str], clock: UserClock, method: str
) -> Any:
    """Replace the date-time strings at ``paths`` in ``node`` (in place) by naive-UTC datetimes.

    Absent and null fields are left alone: the API omits null fields, and new fields may appear.
    A value that is not a date-time with an offset is left as sent and named, with the reason, in
    the row's ``records.INVALID_FIELDS``: typing then rejects the row (or, for an optional field,
    keeps it with the field NULL) instead of the whole answer failing.
    """
    for path in paths:
        try:
            _convert_path(node, path.split("."), clock, method, path)
        except VendorResponseError:
            if "*" in path or not isinstance(node, dict):
                raise
            node.setdefault(INVALID_FIELDS, {})[path] = "not a date-time with a UTC offset"
    return node


def _convert_path(node: Any, parts: list[str], clock: UserClock, method: str, path: str) -> None:
    if node is None or not parts:
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in list(children):
            _convert_path(child, rest, clock, method, path)
        return
    if not isinstance(node, dict) or node.get(head) is None:
        return
    if rest:
        _convert_path(node[head], rest, clock, method, path)
    elif not isinstance(node[head], datetime):
        node[head] = clock.parse(node[head], method, path)
