"""Navixy API v2 client: authentication, the user's time zone, batching, paging and limits.

Every call is a JSON POST to ``{base_url}/{resource}/{action}`` (``base_url`` already holds the
white-label prefix, e.g. ``https://host/api-v2``). What makes this client more than a loop around
``requests`` is what the platform does in production (``vendor-apis/FIELD-NOTES.md``):

* the session hash goes in the ``Authorization: NVX <hash>`` header, never in the URL (URLs end
  up in proxy and server logs). A ``user/auth`` hash is shared by every process through a file
  guarded by an ``fcntl`` lock (the platform limits logins: code 104), and renewed once on code
  3/4; an API key is used as the hash and never renewed;
* date-times are in the USER's time zone, input and output. This client asks for ISO 8601 mode
  on every call (``NVX-ISO-DateTime`` header and ``iso_datetime`` body flag), sends every
  date-time with its explicit UTC offset and converts every date-time it receives to naive UTC.
  Why ISO mode and not local strings: on the autumn DST day (2026-10-25 in Europe/Paris) the
  local hour 02:00-02:59 happens twice, so a plain ``yyyy-MM-dd HH:mm:ss`` names two instants and
  no rule recovers which one a point or an event belongs to (ordering fails as soon as one of the
  two hours has no data). With offsets, the instant is exact in both directions. A date-time that
  arrives WITHOUT an offset means the platform ignored ISO mode; the client then refuses the
  answer (``VendorResponseError``) instead of guessing, so such a platform fails on its first
  call, not silently once a year;
* limits: ``tracker/get_states`` <= 2000 trackers, ``tracker/stats/mileage/read`` <= 128 trackers
  and <= 31 days, ``history/tracker/list`` <= 1000 rows with no offset (paged by moving ``from``
  and de-duplicating by event id), ``track/read`` with ``from`` exclusive; 50 requests/s per user
  and per IP, paced by a cross-process ledger at 40/s by default.

Rows are returned as the vendor sent them, apart from the date-time conversion and integer
tracker-id keys; ``source.device_id`` (the IMEI) is always a string.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_pipeline.ingest.http import (
    Backoff,
    FileWindowLimiter,
    HttpSession,
    Reply,
    RequestParts,
    RetryPolicy,
    RetryableVendorError,
    Secrets,
    VendorAPIError,
    VendorAuthError,
    VendorClient,
    VendorResponseError,
    retry_after_s,
)
from fleet_pipeline.ingest.records import INVALID_FIELDS
from fleet_pipeline.ingest.shared_files import SharedJsonFile, cache_key

logger = logging.getLogger("fleet_pipeline.sources.navixy")

VENDOR = "navixy"

USER_AUTH = "user/auth"
USER_GET_INFO = "user/get_info"
TRACKER_LIST = "tracker/list"
GET_STATES = "tracker/get_states"
GET_LAST_GPS_POINT = "tracker/get_last_gps_point"
GET_DIAGNOSTICS = "tracker/get_diagnostics"
GET_FUEL = "tracker/get_fuel"
GET_READINGS = "tracker/get_readings"
TRACK_LIST = "track/list"
TRACK_READ = "track/read"
HISTORY_LIST = "history/tracker/list"
MILEAGE_READ = "tracker/stats/mileage/read"

# Documented limits (navixy-official/*, FIELD-NOTES).
STATES_BATCH = 2000
MILEAGE_BATCH = 128
MILEAGE_MAX_SPAN = timedelta(days=31)
MILEAGE_MAX_DAYS = 31
HISTORY_LIMIT = 1000
# history/tracker/list has no documented tracker cap; bounded so one request stays small.
HISTORY_BATCH = 500
# track/read and track/list are capped by "the API configuration" (code 211); a week keeps one
# answer to a few thousand points. A window the platform still finds too long is halved.
TRACK_WINDOW = timedelta(days=7)
MIN_SPLIT_WINDOW = timedelta(hours=1)
# track/list: a trip that starts inside the window may end after it; asking a little further
# lets a server that lists only completed tracks return it. Trips are then kept by start time.
TRIP_OVERHANG = timedelta(hours=6)
# The platform's timestamps are whole seconds; "from" is exclusive, so one second earlier
# includes a point or an event stamped exactly at the window's start.
ONE_SECOND = timedelta(seconds=1)

SESSION_REJECTED_CODES = frozenset({3, 4})
THROTTLE_CODES = frozenset({15})
# Database error, unexpected error, queue service, database unavailable: transient by nature.
RETRYABLE_CODES = frozenset({1, 6, 8, 14})

# Date-time fields per method (dotted paths, ``*`` = every value of a map or item of a list).
USER_TIME_FIELDS = ("user_info.creation_date", "master.creation_date")
STATE_TIME_FIELDS = (
    "gps.updated", "gsm.updated", "movement_status_update", "ignition_update", "last_update",
    "battery_update", "inputs_update", "outputs_update", "additional.*.updated",
    "actual_track_update",
)
SENSOR_TIME_FIELDS = ("user_time", "update_time")
POINT_TIME_FIELDS = ("get_time",)
TRIP_TIME_FIELDS = ("start_date", "end_date", "points_list.*.get_time")
EVENT_TIME_FIELDS = ("time",)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class SessionRejected(VendorAuthError):
    """Codes 3 (wrong hash) / 4 (session ended): the caller re-authenticates once and retries."""


class TrackerBlocked(VendorAPIError):
    """Code 208: the tracker exists but is blocked (tariff ended); no data may be read."""


class TrackerNotFound(VendorAPIError):
    """Code 201/204: no such tracker on this user (deleted, or never ours)."""


class NonexistentEntities(VendorAPIError):
    """Code 217: a list of trackers holds one that does not exist or is blocked."""


class TimeSpanTooBig(VendorAPIError):
    """Code 211: the window is longer than the platform's configuration allows."""


class UnpageableEvents(VendorAPIError):
    """``limit`` events of one tracker share one second: moving ``from`` cannot get past them."""


_ERROR_CLASSES: dict[int, type[VendorAPIError]] = {
    201: TrackerNotFound,
    204: TrackerNotFound,
    208: TrackerBlocked,
    211: TimeSpanTooBig,
    217: NonexistentEntities,
}


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class StatesResult:
    """``tracker/get_states`` for many trackers: blocked and deleted ones are listed, not fatal."""

    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


class WindowRows(NamedTuple):
    """Rows of a time window and the platform's warning that part of it was out of reach.

    ``limit_exceeded`` is true when the window reaches beyond the tracker's storage period: the
    platform then drops those rows silently, so the caller must not treat the rows as complete.
    """

    rows: list[dict[str, Any]]
    limit_exceeded: bool


# ---------------------------------------------------------------------------------------------
# Time: the user's zone at the client's edge
# ---------------------------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    """Naive UTC from a naive-UTC or aware datetime (aware values are converted)."""
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class UserClock:
    """Converts between naive UTC and the API's date-time strings for one user's time zone."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone

    def to_param(self, utc: datetime) -> str:
        """``2026-10-25T02:30:00+01:00``: local wall time plus the offset that makes it exact."""
        aware = _as_utc(utc).replace(tzinfo=timezone.utc).astimezone(self.zone)
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
        return _as_utc(utc).replace(tzinfo=timezone.utc).astimezone(self.zone).date()

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


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _unique_ids(tracker_ids: Iterable[int | str]) -> list[int]:
    return list(dict.fromkeys(int(t) for t in tracker_ids))


def _batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _windows(begin: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = begin
    while cursor < end:
        stop = min(cursor + span, end)
        yield cursor, stop
        cursor = stop


def _halves(begin: datetime, end: datetime) -> tuple[tuple[datetime, datetime], ...]:
    middle = begin + timedelta(seconds=int((end - begin).total_seconds()) // 2)
    return (begin, middle), (middle, end)


def _require_rows(rows: list[Any], method: str) -> None:
    """Rows are objects; anything else means the answer's shape is not what the API documents."""
    for row in rows:
        if not isinstance(row, dict):
            raise VendorResponseError(VENDOR, method, f"a row is {type(row).__name__}, not an object")


def _timed(row: dict[str, Any], key: str) -> bool:
    return isinstance(row.get(key), datetime)


def _in_window(rows: Iterable[dict[str, Any]], key: str, begin: datetime, end: datetime
               ) -> list[dict[str, Any]]:
    """The rows of ``[begin, end)``, and the rows whose time is missing or unreadable: those cannot
    be placed, so they are handed on for validation to reject with their reason, not dropped."""
    return [r for r in rows if not _timed(r, key) or begin <= r[key] < end]


def _by_time(key: str, *then: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Sort key: rows without a readable time first, then by time (and ``then`` as text)."""
    return lambda r: (_timed(r, key), r[key] if _timed(r, key) else datetime.min,
                      *(str(r.get(name)) for name in then))


def _list_of(payload: dict[str, Any], key: str, method: str) -> list[Any]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise VendorResponseError(VENDOR, method, f"{key!r} is {type(value).__name__}, not a list")
    return value


# ---------------------------------------------------------------------------------------------
# The session hash shared across processes
# ---------------------------------------------------------------------------------------------


class SessionCache:
    """The ``user/auth`` hash of one (base URL, login), shared by every process on the machine
    (the platform answers 104, "logins limit exceeded", to clients that log in on every run)."""

    def __init__(self, directory: Path, base_url: str, login: str) -> None:
        self.file = SharedJsonFile(directory, f"navixy-session-{cache_key(base_url, login)}")
        self.path = self.file.path

    def read(self) -> str | None:
        value = (self.file.read() or {}).get("hash")
        return str(value) if value else None

    def write(self, session_hash: str, obtained_at: datetime) -> None:
        self.file.write({"hash": session_hash, "obtained_at": obtained_at.isoformat()})

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.file.locked()


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class NavixyClient(VendorClient):
    """One Navixy user on one platform (``base_url`` ends with the API prefix, e.g. ``/api-v2``).

    Give either ``api_key`` (never expires, never renewed) or ``login`` + ``password`` (a
    session hash cached in ``cache_dir``). ``cache_dir`` also holds the request-rate ledger that
    every client of this platform on the machine shares. ``now`` is the UTC clock (session
    bookkeeping, capping windows at the present); ``sleep`` waits between retries; a session
    passed in as ``http`` keeps its own retry policy, sleep and limiter.

    Tracker ids are ints; every date-time in a returned row is a naive-UTC ``datetime``.
    Trackers the platform refuses as blocked (208) or absent are collected in
    ``blocked_trackers`` / ``missing_trackers``; ``skipped_calls`` counts the calls that
    returned nothing because of them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        login: str | None = None,
        password: str | None = None,
        cache_dir: Path,
        http: HttpSession | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        max_calls_per_s: int | None = 45,
        concurrency: int = 16,
        memo: Callable[[str, Callable[[], Any]], Any] | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        throttle_backoff: Backoff | None = None,
        timeout_s: float | tuple[float, float] = (10.0, 120.0),
        history_limit: int = HISTORY_LIMIT,
        track_window: timedelta = TRACK_WINDOW,
    ) -> None:
        if api_key and (login or password):
            raise ValueError("navixy client: give either api_key or login+password, not both")
        if not api_key and not (login and password):
            raise ValueError("navixy client: an api_key or a login and password is required")
        self.base_url = base_url.rstrip("/")
        self.login = login
        self._api_key = api_key
        self._password = password
        self.cache_dir = Path(cache_dir)
        self._now = now
        self._rng = rng or random.Random()
        # Code 15 is a per-second quota: a second or two, doubling, is enough to get back under.
        self.throttle_backoff = throttle_backoff or Backoff(base_s=1.0, multiplier=2.0, max_s=30.0)
        self.history_limit = history_limit
        self.track_window = track_window
        self.concurrency = concurrency
        self._owns_http = http is None
        self.http = http or HttpSession(
            VENDOR,
            retry=retry or RetryPolicy(max_attempts=6, backoff=Backoff(base_s=0.5, max_s=30.0)),
            sleep=sleep,
            timeout_s=timeout_s,
            rng=self._rng,
            pool_maxsize=concurrency,
            # The platform counts per user hash AND per client IP, so every client of this
            # platform on this machine (other steps, other runs, other users) draws from one
            # ledger. Real time on purpose: the vendor's window is wall-clock.
            limiter=(
                FileWindowLimiter(_ledger_path(self.cache_dir, self.base_url), max_calls_per_s, 1.0,
                                 evenly=True)
                if max_calls_per_s else None
            ),
        )
        self.secrets: Secrets = self.http.secrets
        for secret in (api_key, password):
            self.secrets.register(secret)
        self._cache = SessionCache(self.cache_dir, self.base_url, login) if login else None
        self._hash: str | None = api_key
        self._user_info: dict[str, Any] | None = None
        self._user_info_lock = threading.Lock()
        self._memo = memo or (lambda _key, compute: compute())
        self._clock: UserClock | None = None
        # history/tracker/list "from": inclusive or exclusive is undocumented; learnt on the
        # first page boundary (see _event_pages). None = not known yet.
        self._history_from_exclusive: bool | None = None
        self.blocked_trackers: set[int] = set()
        self.missing_trackers: set[int] = set()
        self.skipped_calls = 0

    # -----------------------------------------------------------------------------------------
    # User and time zone
    # -----------------------------------------------------------------------------------------

    def user_info(self) -> dict[str, Any]:
        """``user/get_info`` (without ``success``), fetched once per client, or once per step for
        the clients that share a ``memo``.

        Date-time fields converted: ``user_info.creation_date``, ``master.creation_date``.
        """
        with self._user_info_lock:
            if self._user_info is None:
                # Shared by the step's clients through ``memo``; converted on a copy, since
                # convert_times works in place.
                self._user_info = self._parse_user_info(copy.deepcopy(
                    self._memo(USER_GET_INFO, lambda: self.call(USER_GET_INFO, {}))))
        return self._user_info

    def _parse_user_info(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The user's time zone, learnt; the answer with its date-times converted."""
        info = payload.get("user_info")
        zone_name = info.get("time_zone") if isinstance(info, dict) else None
        if not zone_name:
            raise VendorResponseError(VENDOR, USER_GET_INFO, "answer carries no user_info.time_zone")
        try:
            zone = ZoneInfo(str(zone_name))
        except (ZoneInfoNotFoundError, ValueError):
            raise VendorResponseError(
                VENDOR, USER_GET_INFO, f"unknown time zone {str(zone_name)[:60]!r}"
            ) from None
        self._clock = UserClock(zone)
        payload.pop("success", None)
        return convert_times(payload, USER_TIME_FIELDS, self._clock, USER_GET_INFO)

    @property
    def time_zone(self) -> ZoneInfo:
        """The user's IANA time zone, in which the platform reads and renders every date-time."""
        return self.clock.zone

    @property
    def clock(self) -> UserClock:
        if self._clock is None:
            self.user_info()
        assert self._clock is not None
        return self._clock

    def local_day_window(self, day: date) -> tuple[datetime, datetime]:
        """UTC ``[begin, end)`` of the user's local ``day`` (23 h / 25 h on DST days)."""
        return self.clock.local_day_window(day)

    # -----------------------------------------------------------------------------------------
    # Trackers and their current state
    # -----------------------------------------------------------------------------------------

    def trackers(self) -> list[dict[str, Any]]:
        """``tracker/list``: every tracker of the user, ``source.device_id`` as a string.

        The documented example carries ``device_id`` as a JSON number; an IMEI is an identifier,
        so it is turned into its decimal string here. ``source.creation_date`` and
        ``source.tariff_end_date`` are calendar dates (``yyyy-MM-dd``), left as the vendor's strings.
        """
        payload = self.call(TRACKER_LIST, {})
        rows = _list_of(payload, "list", TRACKER_LIST)
        for row in rows:
            source = row.get("source") if isinstance(row, dict) else None
            if isinstance(source, dict) and source.get("device_id") is not None:
                source["device_id"] = _device_id_text(source["device_id"])
        return rows

    def states(self, tracker_ids: Iterable[int | str]) -> StatesResult:
        """``tracker/get_states`` in batches of 2000, blocked and deleted trackers reported.

        ``list_blocked`` and ``allow_not_exist`` are always set: without them one blocked or
        deleted tracker fails the whole call (208/217). Keys of ``states`` are ints (the API
        keys them by the id as a string). Date-time fields converted in each state:
        ``gps.updated``, ``gsm.updated``, ``movement_status_update``, ``ignition_update``,
        ``last_update``, ``battery_update``, ``inputs_update``, ``outputs_update``,
        ``additional.*.updated``, ``actual_track_update``.
        """
        result = StatesResult()
        ids = _unique_ids(tracker_ids)
        if not ids:
            return result
        clock = self.clock
        for batch in _batches(ids, STATES_BATCH):
            payload = self.call(GET_STATES, {
                "trackers": batch, "list_blocked": True, "allow_not_exist": True,
            })
            states = payload.get("states") or {}
            if not isinstance(states, dict):
                raise VendorResponseError(VENDOR, GET_STATES, "'states' is not an object")
            for key, state in states.items():
                result.states[int(key)] = convert_times(state, STATE_TIME_FIELDS, clock, GET_STATES)
            result.blocked.extend(int(t) for t in _list_of(payload, "blocked", GET_STATES))
            result.missing.extend(int(t) for t in _list_of(payload, "not_exist", GET_STATES))
        self.blocked_trackers.update(result.blocked)
        self.missing_trackers.update(result.missing)
        return result

    def last_gps_point(self, tracker_id: int) -> dict[str, Any] | None:
        """``tracker/get_last_gps_point`` -> the ``value`` point (``get_time`` converted), or None
        when the tracker is blocked."""
        payload = self._tracker_call(GET_LAST_GPS_POINT, tracker_id)
        if payload is None:
            return None
        value = payload.get("value")
        if value is None:
            return None
        return convert_times(value, POINT_TIME_FIELDS, self.clock, GET_LAST_GPS_POINT)

    def diagnostics(self, tracker_id: int) -> dict[str, Any] | None:
        """``tracker/get_diagnostics`` -> ``{user_time, inputs, states, update_time}`` (times
        converted), or None when the tracker is blocked."""
        return self._sensor_payload(GET_DIAGNOSTICS, tracker_id)

    def fuel(self, tracker_id: int) -> dict[str, Any] | None:
        """``tracker/get_fuel`` -> ``{user_time, inputs, update_time}`` (times converted), or None
        when the tracker is blocked."""
        return self._sensor_payload(GET_FUEL, tracker_id)

    def readings(self, tracker_id: int) -> dict[str, Any] | None:
        """``tracker/get_readings`` -> ``{user_time, inputs, update_time}`` (times converted), or
        None when the tracker is blocked."""
        return self._sensor_payload(GET_READINGS, tracker_id)

    def _sensor_payload(self, method: str, tracker_id: int) -> dict[str, Any] | None:
        payload = self._tracker_call(method, tracker_id)
        if payload is None:
            return None
        payload.pop("success", None)
        return convert_times(payload, SENSOR_TIME_FIELDS, self.clock, method)

    def _tracker_call(self, method: str, tracker_id: int) -> dict[str, Any] | None:
        """One single-tracker call; a blocked tracker (208) is noted and yields None."""
        _ = self.clock  # the zone must be known before the answer is converted
        try:
            return self.call(method, {"tracker_id": int(tracker_id)})
        except TrackerBlocked:
            self.blocked_trackers.add(int(tracker_id))
            self._skip(method, [int(tracker_id)], "blocked")
            return None

    # -----------------------------------------------------------------------------------------
    # Tracks
    # -----------------------------------------------------------------------------------------

    def track_points(self, tracker_id: int, begin_utc: datetime, end_utc: datetime) -> WindowRows:
        """``track/read`` at full resolution: every point with ``begin <= get_time < end`` (UTC).

        ``simplify=false`` (the default drops points) and ``filter=false`` (the default drops
        parking points). ``from`` is exclusive, so each window is asked from one second before
        its start, and rows are kept by the half-open window on the client: the first point of
        a window is never lost and adjacent windows never return a point twice. Windows are at
        most ``track_window`` long and halved on code 211. Date-time field converted:
        ``get_time``. ``limit_exceeded`` warns that part of the window is beyond storage.
        """
        return self._windowed(TRACK_READ, tracker_id, begin_utc, end_utc, self._track_read, "get_time")

    def _track_read(self, tracker_id: int, begin: datetime, end: datetime) -> WindowRows:
        clock = self.clock
        payload = self.call(TRACK_READ, {
            "tracker_id": int(tracker_id),
            "from": clock.to_param(begin - ONE_SECOND),
            "to": clock.to_param(end),
            "simplify": False,
            "filter": False,
            "include_gsm_lbs": True,
        })
        points = _list_of(payload, "list", TRACK_READ)
        _require_rows(points, TRACK_READ)
        for point in points:
            convert_times(point, POINT_TIME_FIELDS, clock, TRACK_READ)
        return WindowRows(_in_window(points, "get_time", begin, end),
                          bool(payload.get("limit_exceeded")))

    def trips(self, tracker_id: int, begin_utc: datetime, end_utc: datetime) -> WindowRows:
        """``track/list``: every track that STARTS in ``[begin, end)`` (UTC), unfiltered.

        ``filter=false`` keeps short tracks (the default drops them); ``split=true`` one row per
        trip. Each window is asked from one second before its start (``from`` is exclusive) to
        ``TRIP_OVERHANG`` after its end (a trip may end after the window), and rows are kept by
        ``start_date``, so adjacent windows share no trip. Date-time fields converted:
        ``start_date``, ``end_date`` (and ``points_list.*.get_time`` if present).
        """
        return self._windowed(TRACK_LIST, tracker_id, begin_utc, end_utc, self._track_list, "start_date")

    def _windowed(self, method: str, tracker_id: int, begin_utc: datetime, end_utc: datetime,
                  fetch: Callable[[int, datetime, datetime], WindowRows], time_key: str) -> WindowRows:
        """Read ``[begin, end)`` in windows of at most ``track_window`` (halved on 211), sorted."""
        begin, end = _as_utc(begin_utc), _as_utc(end_utc)
        rows: list[dict[str, Any]] = []
        exceeded = False
        for lo, hi in _windows(begin, end, self.track_window):
            part = self._split_on_211(method, lo, hi, lambda a, b: fetch(tracker_id, a, b))
            rows.extend(part.rows)
            exceeded |= part.limit_exceeded
        rows.sort(key=_by_time(time_key))
        if exceeded:
            self._warn_limit_exceeded(method, tracker_id, begin, end)
        return WindowRows(rows, exceeded)

    def _track_list(self, tracker_id: int, begin: datetime, end: datetime) -> WindowRows:
        clock = self.clock
        # Never ask beyond the present for the overhang: only completed trips exist there.
        to = max(end, min(end + TRIP_OVERHANG, _as_utc(self._now()).replace(microsecond=0)))
        payload = self.call(TRACK_LIST, {
            "tracker_id": int(tracker_id),
            "from": clock.to_param(begin - ONE_SECOND),
            "to": clock.to_param(to),
            "filter": False,
            "split": True,
            "include_gsm_lbs": True,
            "cluster_single_reports": False,
        })
        tracks = _list_of(payload, "list", TRACK_LIST)
        _require_rows(tracks, TRACK_LIST)
        for track in tracks:
            convert_times(track, TRIP_TIME_FIELDS, clock, TRACK_LIST)
        return WindowRows(_in_window(tracks, "start_date", begin, end),
                          bool(payload.get("limit_exceeded")))

    def _split_on_211(
        self,
        method: str,
        begin: datetime,
        end: datetime,
        fetch: Callable[[datetime, datetime], WindowRows],
    ) -> WindowRows:
        """``fetch(begin, end)``, halving the window while the platform answers 211."""
        try:
            return fetch(begin, end)
        except TimeSpanTooBig:
            if end - begin <= MIN_SPLIT_WINDOW:
                raise
        logger.info("navixy %s: window %s..%s too long (211); halving", method, begin, end)
        parts = [self._split_on_211(method, lo, hi, fetch) for lo, hi in _halves(begin, end)]
        return WindowRows([r for p in parts for r in p.rows], any(p.limit_exceeded for p in parts))

    def _warn_limit_exceeded(self, method: str, tracker_id: int, begin: datetime, end: datetime) -> None:
        logger.warning(
            "navixy %s: tracker %s, %s..%s reaches beyond the storage period "
            "(limit_exceeded); older rows were dropped by the platform",
            method, tracker_id, begin.isoformat(), end.isoformat(),
        )

    # -----------------------------------------------------------------------------------------
    # Events
    # -----------------------------------------------------------------------------------------

    def events(self, tracker_ids: Iterable[int | str], begin_utc: datetime, end_utc: datetime
               ) -> list[dict[str, Any]]:
        """``history/tracker/list``: every event with ``begin <= time < end`` (UTC), once.

        The method has no offset and returns at most ``limit`` (1000) rows, so pages are read by
        moving ``from`` to the last event's time and de-duplicating by event id: events sharing
        that second are read again, never skipped. If a full page brings nothing new, ``limit``
        events share one second: the tracker batch is split in two and each half paged on its
        own; a single tracker with that many events in one second raises ``UnpageableEvents``
        (rather than loop or drop). Batches of ``HISTORY_BATCH`` trackers, ``concurrency`` at a
        time; a blocked or deleted tracker (217) is identified with ``get_states``, recorded and
        left out. Date-time field converted: ``time``. Rows sorted by (time, id).
        """
        begin, end = _as_utc(begin_utc), _as_utc(end_utc)
        ids = _unique_ids(tracker_ids)
        found: dict[Any, dict[str, Any]] = {}
        if begin >= end:
            return []

        def batch_events(batch: list[int]) -> dict[Any, dict[str, Any]]:
            of_batch: dict[Any, dict[str, Any]] = {}
            self._without_unavailable(HISTORY_LIST, batch, lambda b: self._events_window(b, begin, end, of_batch))
            return of_batch

        for _, of_batch in self.fan_out(_batches(ids, HISTORY_BATCH), batch_events):
            found.update(of_batch)
        rows = _in_window(found.values(), "time", begin, end)
        rows.sort(key=_by_time("time", "id"))
        return rows

    def _events_window(self, batch: list[int], begin: datetime, end: datetime,
                       found: dict[Any, dict[str, Any]]) -> None:
        def fetch(lo: datetime, hi: datetime) -> WindowRows:
            self._event_pages(batch, lo, hi, found)
            return WindowRows([], False)

        self._split_on_211(HISTORY_LIST, begin, end, fetch)

    def _event_pages(self, batch: list[int], begin: datetime, end: datetime,
                     found: dict[Any, dict[str, Any]]) -> None:
        """Page ``[begin, end)`` for ``batch`` into ``found`` (event id -> row)."""
        # The first page starts one second early: that includes events at ``begin`` whether
        # ``from`` is exclusive or inclusive (the extra second is dropped by the window filter).
        page = self._history_page(batch, begin - ONE_SECOND, end)
        while True:
            new = self._absorb(page, found)
            if not self._is_full(page):
                return
            if not _timed(page.rows[-1], "time"):
                raise VendorResponseError(VENDOR, HISTORY_LIST, "a full page of events has no readable "
                                          "'time': the method cannot be paged past it")
            last = page.rows[-1]["time"]
            if new == 0:
                self._past_crowded_second(batch, last, end, found)
                return
            page = self._page_from(batch, last, end)

    def _page_from(self, batch: list[int], second: datetime, end: datetime) -> WindowRows:
        """The page of events at or after ``second`` (an event at ``second`` is known to exist).

        An inclusive ``from`` is sent ``second`` itself; an exclusive one, ``second`` minus one
        second. Which one the platform implements is learnt here once: asked from ``second``, an
        inclusive platform returns the known event at ``second``, an exclusive one starts later.
        """
        if self._history_from_exclusive:
            return self._history_page(batch, second - ONE_SECOND, end)
        page = self._history_page(batch, second, end)
        if self._history_from_exclusive is None:
            # No row at or before ``second`` (even an empty page) means the known event there
            # was excluded: the platform's ``from`` is exclusive.
            timed = [row["time"] for row in page.rows if _timed(row, "time")]
            self._history_from_exclusive = not (timed and timed[0] <= second)
            if self._history_from_exclusive:
                logger.info("navixy %s: 'from' is exclusive on this platform", HISTORY_LIST)
                return self._history_page(batch, second - ONE_SECOND, end)
        return page

    def _past_crowded_second(self, batch: list[int], second: datetime, end: datetime,
                             found: dict[Any, dict[str, Any]]) -> None:
        """A full page of already-seen events: ``limit`` of them share ``second``."""
        if len(batch) == 1:
            raise UnpageableEvents(
                VENDOR, HISTORY_LIST,
                f"{self.history_limit} or more events of tracker {batch[0]} share the second "
                f"{second.isoformat()} UTC; the method cannot page past them (no offset), so the "
                "window cannot be read completely",
            )
        logger.info(
            "navixy %s: %s events share %s UTC across %s trackers; splitting the batch",
            HISTORY_LIST, self.history_limit, second.isoformat(), len(batch),
        )
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            # Each half starts at the crowded second itself (the first page is one second early).
            self._event_pages(half, second, end, found)

    def _history_page(self, batch: list[int], from_utc: datetime, end: datetime) -> WindowRows:
        clock = self.clock
        payload = self.call(HISTORY_LIST, {
            "trackers": batch,
            "from": clock.to_param(from_utc),
            "to": clock.to_param(end),
            "limit": self.history_limit,
            "ascending": True,
        })
        events = _list_of(payload, "list", HISTORY_LIST)
        _require_rows(events, HISTORY_LIST)
        for event in events:
            convert_times(event, EVENT_TIME_FIELDS, clock, HISTORY_LIST)
        # Ascending is asked for; sorting again makes the paging cursor independent of it (rows
        # without a readable time come first: the cursor is the last readable one).
        events.sort(key=_by_time("time"))
        return WindowRows(events, bool(payload.get("limit_exceeded")))

    def _is_full(self, page: WindowRows) -> bool:
        return len(page.rows) >= self.history_limit or (page.limit_exceeded and bool(page.rows))

    @staticmethod
    def _absorb(page: WindowRows, found: dict[Any, dict[str, Any]]) -> int:
        new = 0
        for event in page.rows:
            # An event without an id is kept (validation rejects it), once per distinct content.
            key = event.get("id")
            key = key if key is not None else ("no id", json.dumps(event, sort_keys=True, default=str))
            if key not in found:
                found[key] = event
                new += 1
        return new

    # -----------------------------------------------------------------------------------------
    # Mileage
    # -----------------------------------------------------------------------------------------

    def mileage(self, tracker_ids: Iterable[int | str], from_local_date: date, to_local_date: date
                ) -> list[dict[str, Any]]:
        """``tracker/stats/mileage/read`` -> rows ``{tracker_id, local_date, mileage_km}``.

        Both dates are INCLUSIVE days of the user's time zone (the platform keys its days in user
        time; a local day is 23 to 25 hours long). Batches of 128 trackers, ``concurrency`` at a
        time; chunks of at most 31
        days whose real duration is also at most 31 days (the docs do not say how P31D is
        measured; 31 local days over the autumn change last 31 days and 1 hour, so such a chunk
        gets 30 days). Each chunk is asked from local 00:00 of its first day to local 00:00 after
        its last (23:59:59 would lose the last second of driving), with explicit offsets; a key
        for the day after the chunk, if the platform adds one, is dropped. A blocked or deleted
        tracker (217/208) is identified with ``get_states``, recorded and left out; 211 halves
        the chunk.
        """
        ids = _unique_ids(tracker_ids)
        rows: list[dict[str, Any]] = []
        if not ids or to_local_date < from_local_date:
            return rows

        def batch_rows(job: tuple[list[int], date, date]) -> list[dict[str, Any]]:
            batch, first, last = job
            of_batch: list[dict[str, Any]] = []
            self._without_unavailable(MILEAGE_READ, batch,
                                      lambda b: of_batch.extend(self._mileage_range(b, first, last)))
            return of_batch

        jobs = [(batch, first, last) for first, last in self._mileage_chunks(from_local_date, to_local_date)
                for batch in _batches(ids, MILEAGE_BATCH)]
        for _, of_batch in self.fan_out(jobs, batch_rows):
            rows.extend(of_batch)
        rows.sort(key=lambda r: (r["tracker_id"], r["local_date"]))
        return rows

    def _mileage_chunks(self, first: date, last: date) -> Iterator[tuple[date, date]]:
        clock = self.clock
        start = first
        while start <= last:
            days = min(MILEAGE_MAX_DAYS, (last - start).days + 1)
            while days > 1 and self._mileage_span(clock, start, days) > MILEAGE_MAX_SPAN:
                days -= 1
            yield start, start + timedelta(days=days - 1)
            start += timedelta(days=days)

    @staticmethod
    def _mileage_span(clock: UserClock, start: date, days: int) -> timedelta:
        return clock.local_midnight(start + timedelta(days=days)) - clock.local_midnight(start)

    def _mileage_range(self, batch: list[int], first: date, last: date) -> list[dict[str, Any]]:
        try:
            return self._mileage_call(batch, first, last)
        except TimeSpanTooBig:
            if first >= last:
                raise
        middle = first + timedelta(days=(last - first).days // 2)
        logger.info("navixy %s: %s..%s too long (211); halving", MILEAGE_READ, first, last)
        return (self._mileage_range(batch, first, middle)
                + self._mileage_range(batch, middle + timedelta(days=1), last))

    def _mileage_call(self, batch: list[int], first: date, last: date) -> list[dict[str, Any]]:
        clock = self.clock
        payload = self.call(MILEAGE_READ, {
            "trackers": batch,
            "from": clock.to_param(clock.local_midnight(first)),
            "to": clock.to_param(clock.local_midnight(last + timedelta(days=1))),
        })
        if payload.get("limit_exceeded"):
            logger.warning(
                "navixy %s: %s..%s reaches beyond the storage period (limit_exceeded); "
                "days before it are missing", MILEAGE_READ, first, last,
            )
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

    # -----------------------------------------------------------------------------------------
    # Trackers the platform refuses
    # -----------------------------------------------------------------------------------------

    def _without_unavailable(self, method: str, batch: list[int],
                             run: Callable[[list[int]], object]) -> None:
        """``run(batch)`` without the trackers the platform refuses.

        Trackers already known to be blocked or gone are left out up front. On 217/208/201 the
        batch is checked with ``get_states`` (one call), the refused trackers are recorded and
        left out, and the rest is run once more; a second refusal is an error.
        """
        known = self.blocked_trackers | self.missing_trackers
        batch = [t for t in batch if t not in known]
        if not batch:
            return
        try:
            run(batch)
            return
        except (NonexistentEntities, TrackerBlocked, TrackerNotFound) as refused:
            logger.info("navixy %s: code %s for a batch of %s trackers; checking which",
                        method, refused.code, len(batch))
        states = self.states(batch)
        gone = set(states.blocked) | set(states.missing)
        if not gone:
            raise VendorAPIError(
                VENDOR, method,
                f"refused a batch of {len(batch)} trackers, but get_states reports none of them "
                "blocked or missing",
            )
        self._skip(method, sorted(gone), "blocked or missing")
        remaining = [t for t in batch if t not in gone]
        if remaining:
            run(remaining)

    def _skip(self, method: str, tracker_ids: list[int], why: str) -> None:
        self.skipped_calls += 1
        logger.warning("navixy %s: skipping %s tracker(s) %s: %s", method, len(tracker_ids),
                       ", ".join(str(t) for t in tracker_ids[:20]), why)

    # -----------------------------------------------------------------------------------------
    # Calls, envelopes, authentication
    # -----------------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One authenticated call; on code 3/4 logs in again once and retries once.

        An API key cannot be renewed, so its rejection is final.
        """
        session_hash = self._session_hash()
        try:
            return self._post(method, params, session_hash)
        except SessionRejected as rejected:
            if self._api_key:
                raise VendorAuthError(
                    VENDOR, method, f"API key rejected: {rejected.message}", rejected.code
                ) from None
            logger.info("navixy %s: session rejected (code %s); logging in again once",
                        method, rejected.code)
        session_hash = self._renew(rejected=session_hash)
        try:
            return self._post(method, params, session_hash)
        except SessionRejected as again:
            raise VendorAuthError(
                VENDOR, method, f"session rejected again right after login: {again.message}",
                again.code,
            ) from None

    def _post(self, method: str, params: dict[str, Any], session_hash: str | None) -> dict[str, Any]:
        body = {**params, "iso_datetime": True}

        def build() -> RequestParts:
            headers = {"NVX-ISO-DateTime": "true"}
            if session_hash is not None:
                headers["Authorization"] = f"NVX {session_hash}"
            return RequestParts(json=body, headers=headers)

        return self.http.call(method, f"{self.base_url}/{method}", build=build, check=self._check)

    def _check(self, reply: Reply) -> dict[str, Any]:
        method = reply.method
        payload = reply.payload
        if not isinstance(payload, dict):
            raise VendorResponseError(
                VENDOR, method, f"expected a JSON object, got {type(payload).__name__}",
                status=reply.status,
            )
        if payload.get("success") is True:
            return payload
        status = payload.get("status") if isinstance(payload.get("status"), dict) else {}
        code = _int_code(status.get("code"))
        description = self.secrets.redact(str(status.get("description") or "no description"))
        if code is None:
            raise VendorResponseError(
                VENDOR, method, "answer is neither success nor a status code", status=reply.status
            )
        if code in THROTTLE_CODES or reply.status == 429:
            wait = retry_after_s(reply.headers.get("Retry-After"))
            if wait is None:
                wait = self.throttle_backoff.delay(reply.attempt, self._rng)
            raise RetryableVendorError(
                VENDOR, method, f"too many requests: {description}", code,
                status=reply.status, wait_s=wait, throttle=True,
            )
        if code in RETRYABLE_CODES:
            raise RetryableVendorError(VENDOR, method, description, code, status=reply.status)
        if code in SESSION_REJECTED_CODES:
            raise SessionRejected(VENDOR, method, description, code, status=reply.status)
        error_class = _ERROR_CLASSES.get(code, VendorAPIError)
        raise error_class(VENDOR, method, description, code, status=reply.status)

    def _session_hash(self) -> str:
        if self._hash is not None:
            return self._hash
        assert self._cache is not None
        cached = self._cache.read()
        if cached:
            self._adopt(cached)
            return cached
        return self._renew(rejected=None)

    def _adopt(self, session_hash: str) -> None:
        self.secrets.register(session_hash)
        self._hash = session_hash

    def _renew(self, rejected: str | None) -> str:
        """Log in under the cross-process lock, unless another process already has.

        Re-reading the file under the lock is what lets the second process reuse the hash the
        first one just obtained instead of logging in again.
        """
        assert self._cache is not None
        with self._cache.locked():
            cached = self._cache.read()
            if cached and cached != rejected:
                self._adopt(cached)
                return cached
            session_hash = self._authenticate()
            self._cache.write(session_hash, _as_utc(self._now()))
            self._adopt(session_hash)
            return session_hash

    def _authenticate(self) -> str:
        try:
            payload = self._post(USER_AUTH, {"login": self.login, "password": self._password}, None)
        except VendorAPIError as refused:
            # 102 wrong login or password, 103 not activated, 104/105 login limits, 4 no such
            # user. Transport, throttling and body errors keep their own type.
            if type(refused) in (VendorAPIError, SessionRejected, TrackerNotFound):
                raise VendorAuthError(
                    VENDOR, USER_AUTH, f"login refused: {refused.message}", refused.code
                ) from None
            raise
        session_hash = payload.get("hash")
        if not session_hash:
            raise VendorResponseError(VENDOR, USER_AUTH, "answer carries no hash")
        if payload.get("type") not in (None, "authenticated"):
            # Two-factor accounts get a hash usable only for the code step: useless here.
            raise VendorAuthError(
                VENDOR, USER_AUTH,
                f"login needs a second factor ({str(payload.get('factor_type'))[:20]}); "
                "use an API key for this integration",
            )
        self.secrets.register(str(session_hash))
        logger.info("navixy: logged in as %s", self.login)
        return str(session_hash)


def _int_code(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _device_id_text(value: object) -> str:
    """The device id as the digits it is; a float-typed number must not become ``'1.2e+14'``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _ledger_path(directory: Path, base_url: str) -> Path:
    key = hashlib.sha256(base_url.encode()).hexdigest()[:24]
    return Path(directory) / f"navixy-rate-{key}.json"
