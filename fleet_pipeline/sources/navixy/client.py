"""Navixy API v2 client: one user's trackers, states, tracks, events and mileage as vendor rows.

Every call is a JSON POST to ``{base_url}/{resource}/{action}`` (``base_url`` already holds the
white-label prefix, e.g. ``https://host/api-v2``) in ISO date-time mode. What the platform does
in production (``docs/vendor-apis/FIELD-NOTES.md``) is handled one concern per module: ``auth`` (the
session hash or API key, in the ``Authorization`` header, never in the URL), ``timezones`` (the
user's zone: explicit offsets out, naive UTC in), ``limits`` (batch and window limits),
``tracks``, ``events`` and ``mileage`` (windowing and paging per method), ``errors`` (status
codes). Requests are paced by a cross-process ledger below the platform's 50 per second per
user and per IP.

Rows are returned as the vendor sent them, apart from the date-time conversion and integer
tracker-id keys; ``source.device_id`` (the IMEI) is always a string.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fleet_pipeline.ingest.http import (
    Backoff,
    HttpSession,
    Reply,
    RequestParts,
    RetryPolicy,
    Secrets,
    VendorAPIError,
    VendorClient,
    VendorResponseError,
)
from fleet_pipeline.ingest.shared_files import cache_key
from fleet_pipeline.ingest.shared_state import window_limiter
from fleet_pipeline.sources.navixy.auth import SessionAuth, SessionCache
from fleet_pipeline.sources.navixy.endpoints import (
    GET_DIAGNOSTICS,
    GET_FUEL,
    GET_LAST_GPS_POINT,
    GET_READINGS,
    GET_STATES,
    HISTORY_LIST,
    MILEAGE_READ,
    POINT_TIME_FIELDS,
    SENSOR_TIME_FIELDS,
    STATE_TIME_FIELDS,
    TRACKER_LIST,
    USER_GET_INFO,
    USER_TIME_FIELDS,
    VENDOR,
)
from fleet_pipeline.sources.navixy.errors import (
    NonexistentEntities,
    TrackerBlocked,
    TrackerNotFound,
    check_reply,
)
from fleet_pipeline.sources.navixy.events import EventPager
from fleet_pipeline.sources.navixy.limits import (
    HISTORY_BATCH,
    HISTORY_LIMIT,
    MILEAGE_BATCH,
    STATES_BATCH,
    TRACK_WINDOW,
    batches,
    unique_ids,
)
from fleet_pipeline.sources.navixy.mileage import mileage_chunks, mileage_range
from fleet_pipeline.sources.navixy.rows import (
    StatesResult,
    WindowRows,
    by_time,
    device_id_text,
    in_window,
    list_of,
)
from fleet_pipeline.sources.navixy.timezones import UserClock, convert_times, user_zone
from fleet_pipeline.sources.navixy.tracks import TrackReader
from fleet_pipeline.sources.time_windows import as_naive_utc, utcnow

logger = logging.getLogger("fleet_pipeline.sources.navixy")


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
        self.cache_dir = Path(cache_dir)
        self._now = now
        self._rng = rng or random.Random()
        # Code 15 is a per-second quota: a second or two, doubling, is enough to get back under.
        self.throttle_backoff = throttle_backoff or Backoff(base_s=1.0, multiplier=2.0, max_s=30.0)
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
                window_limiter(_ledger_path(self.cache_dir, self.base_url), max_calls_per_s, 1.0,
                                 evenly=True)
                if max_calls_per_s else None
            ),
        )
        self.secrets: Secrets = self.http.secrets
        for secret in (api_key, password):
            self.secrets.register(secret)
        self._auth = SessionAuth(
            api_key=api_key, login=login, password=password,
            cache=SessionCache(self.cache_dir, self.base_url, login) if login else None,
            secrets=self.secrets, now=now, post=self._post,
        )
        self._user_info: dict[str, Any] | None = None
        self._user_info_lock = threading.Lock()
        self._memo = memo or (lambda _key, compute: compute())
        self._clock: UserClock | None = None
        self._history = EventPager(self.call, lambda: self.clock, history_limit)
        self._tracks = TrackReader(self.call, lambda: self.clock, now, track_window)
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
        self._clock = UserClock(user_zone(payload))
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
        rows = list_of(payload, "list", TRACKER_LIST)
        for row in rows:
            source = row.get("source") if isinstance(row, dict) else None
            if isinstance(source, dict) and source.get("device_id") is not None:
                source["device_id"] = device_id_text(source["device_id"])
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
        ids = unique_ids(tracker_ids)
        if not ids:
            return result
        clock = self.clock
        for batch in batches(ids, STATES_BATCH):
            payload = self.call(GET_STATES, {
                "trackers": batch, "list_blocked": True, "allow_not_exist": True,
            })
            states = payload.get("states") or {}
            if not isinstance(states, dict):
                raise VendorResponseError(VENDOR, GET_STATES, "'states' is not an object")
            for key, state in states.items():
                result.states[int(key)] = convert_times(state, STATE_TIME_FIELDS, clock, GET_STATES)
            result.blocked.extend(int(t) for t in list_of(payload, "blocked", GET_STATES))
            result.missing.extend(int(t) for t in list_of(payload, "not_exist", GET_STATES))
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
        return self._tracks.points(tracker_id, begin_utc, end_utc)

    def trips(self, tracker_id: int, begin_utc: datetime, end_utc: datetime) -> WindowRows:
        """``track/list``: every track that STARTS in ``[begin, end)`` (UTC), unfiltered.

        ``filter=false`` keeps short tracks (the default drops them); ``split=true`` one row per
        trip. Each window is asked from one second before its start (``from`` is exclusive) to
        ``TRIP_OVERHANG`` after its end (a trip may end after the window), and rows are kept by
        ``start_date``, so adjacent windows share no trip. Date-time fields converted:
        ``start_date``, ``end_date`` (and ``points_list.*.get_time`` if present).
        """
        return self._tracks.trips(tracker_id, begin_utc, end_utc)

    # -----------------------------------------------------------------------------------------
    # Events
    # -----------------------------------------------------------------------------------------

    def events(self, tracker_ids: Iterable[int | str], begin_utc: datetime, end_utc: datetime
               ) -> list[dict[str, Any]]:
        """``history/tracker/list``: every event with ``begin <= time < end`` (UTC), once.

        Paged by moving ``from`` (the method has no offset; see ``events``). Batches of
        ``HISTORY_BATCH`` trackers, ``concurrency`` at a time; a blocked or deleted tracker (217)
        is identified with ``get_states``, recorded and left out. Date-time field converted:
        ``time``. Rows sorted by (time, id).
        """
        begin, end = as_naive_utc(begin_utc), as_naive_utc(end_utc)
        ids = unique_ids(tracker_ids)
        found: dict[Any, dict[str, Any]] = {}
        if begin >= end:
            return []

        def batch_events(batch: list[int]) -> dict[Any, dict[str, Any]]:
            of_batch: dict[Any, dict[str, Any]] = {}
            self._without_unavailable(HISTORY_LIST, batch, lambda b: self._history.read(b, begin, end, of_batch))
            return of_batch

        for _, of_batch in self.fan_out(batches(ids, HISTORY_BATCH), batch_events):
            found.update(of_batch)
        rows = in_window(found.values(), "time", begin, end)
        rows.sort(key=by_time("time", "id"))
        return rows

    # -----------------------------------------------------------------------------------------
    # Mileage
    # -----------------------------------------------------------------------------------------

    def mileage(self, tracker_ids: Iterable[int | str], from_local_date: date, to_local_date: date
                ) -> list[dict[str, Any]]:
        """``tracker/stats/mileage/read`` -> rows ``{tracker_id, local_date, mileage_km}``.

        Both dates are INCLUSIVE days of the user's time zone (the platform keys its days in user
        time; a local day is 23 to 25 hours long). Batches of 128 trackers, ``concurrency`` at a
        time, over chunks of at most 31 days (see ``mileage``; 211 halves a chunk). A blocked or
        deleted tracker (217/208) is identified with ``get_states``, recorded and left out.
        """
        ids = unique_ids(tracker_ids)
        rows: list[dict[str, Any]] = []
        if not ids or to_local_date < from_local_date:
            return rows

        def batch_rows(job: tuple[list[int], date, date]) -> list[dict[str, Any]]:
            batch, first, last = job
            of_batch: list[dict[str, Any]] = []
            self._without_unavailable(MILEAGE_READ, batch,
                                      lambda b: of_batch.extend(mileage_range(self.call, self.clock, b, first, last)))
            return of_batch

        jobs = [(batch, first, last) for first, last in mileage_chunks(self.clock, from_local_date, to_local_date)
                for batch in batches(ids, MILEAGE_BATCH)]
        for _, of_batch in self.fan_out(jobs, batch_rows):
            rows.extend(of_batch)
        rows.sort(key=lambda r: (r["tracker_id"], r["local_date"]))
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
        """One authenticated call; a login's session is renewed once if the platform ends it."""
        return self._auth.call(method, params)

    def _post(self, method: str, params: dict[str, Any], session_hash: str | None) -> dict[str, Any]:
        body = {**params, "iso_datetime": True}

        def build() -> RequestParts:
            headers = {"NVX-ISO-DateTime": "true"}
            if session_hash is not None:
                headers["Authorization"] = f"NVX {session_hash}"
            return RequestParts(json=body, headers=headers)

        return self.http.call(method, f"{self.base_url}/{method}", build=build, check=self._check)

    def _check(self, reply: Reply) -> dict[str, Any]:
        return check_reply(reply, self.secrets, lambda attempt: self.throttle_backoff.delay(attempt, self._rng))


def _ledger_path(directory: Path, base_url: str) -> Path:
    return Path(directory) / f"navixy-rate-{cache_key(base_url)}.json"
