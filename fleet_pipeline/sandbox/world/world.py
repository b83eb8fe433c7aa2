"""The sandbox world: one deterministic synthetic fleet shared by every vendor's fake server.

A world is (seed, n_devices, today), where `today` is the UTC day its clock (`now`) reads when the
world is built. Its calendar is anchored on the Monday of that week (`anchor`), so that the
sandbox is alive whenever it runs and yet every run of the same week sees the same world (a daily
schedule's runs and re-runs, the snapshots of consecutive days agree): devices are activated in
the ~three years up to the end of the anchor's week, with installs on every day of that week and
the weeks just before it (`fleet.py`); every managed model has a firmware campaign that started
at least a week before the anchor and runs past the end of its week (`firmware.py`); stock moves with those installs and a
delivery every Thursday (`stock.py`). So the 7 days before any day of the week (the demo's load)
have a rollout in progress, installs and deliveries. The fleet and its accounts are built eagerly
from cheap per-index hashes (10,000 devices in well under a second); everything that happens on a
device-day is generated on demand from (seed, device index, day) and the device's activation day
alone, so it never depends on the size of the fleet or on the order of calls. A world keeps its
anchor while its clock moves on; the clock only tells servers what they may reveal: fixes received
after `now` do not exist yet for an API, nor does a device whose activation day is after `now`'s
(`is_activated`: the installs of the anchor's week appear day by day).

Costs, CPU time measured on the 2-core dev box:
* `World(n_devices=10_000)`: 0.2-0.3 s; no day is planned or generated.
* `day()`: about 4.5 ms for a driving day (median ~390 fixes, 5-95 %: 160-900), 1.5 ms for a
  parked day; LRU-cached (three days of the fleet, at least 4096 device-days, about 60 KB each).
* `odometer_km()`: the first call for a device plans every day since activation (about 10 ms
  for three years, cached per device); inside a driving day it adds that day's timeline
  (about 1.5 ms), never its fixes.
* firmware (`firmware.py`): a device's OTA attempts and versions cost about 0.55 ms the first
  time (day statuses only, no plan or fix), then microseconds (cached per device, ~5,500
  managed devices in 10,000: about 3 s for all of them). `ota_attempts_updated` over a running
  campaign computes the platform's devices once (AOVX in 10,000: about 1.3 s cold, 60 ms warm).
* stock (`stock.py`): each product's history is walked once (all products of a 10,000-device
  world: about 0.15 s); `stock_on` is then an array lookup.

Layers: `fleet` (accounts, devices) -> `plan` (per-day plans, vectorised over days: statuses,
destinations, exact route lengths -> odometer) -> `timeline` (the motion of one day) -> `daygen`
(its fixes, trips, stops and alarms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

import numpy as np
import polars as pl

from . import daygen, firmware, timeline
from .entities import (
    ALARM_KINDS,
    CITY_CENTER,
    CITY_RADIUS_KM,
    FIRMWARE_PLATFORMS,
    PARKING_MIN_S,
    PLATFORMS,
    POINT_SCHEMA,
    STATUSES,
    Account,
    Alarm,
    Device,
    DeviceDay,
    Stop,
    Trip,
)
from .firmware import OTA_STATUS, Campaign, FirmwareBook, OtaAttempt
from .fleet import ROOT_ACCOUNT_ID, build_accounts, build_devices
from .geo import StreetGrid
from .plan import STATUS_DRIVING, DayPlans, DevicePlanSpec, plan_days
from .stock import Product, StockBook

__all__ = [
    "ALARM_KINDS", "CITY_CENTER", "CITY_RADIUS_KM", "FIRMWARE_PLATFORMS", "OTA_STATUS", "PARKING_MIN_S",
    "PLATFORMS", "POINT_SCHEMA", "STATUSES", "Account", "Alarm", "Campaign", "Device", "DeviceDay",
    "OtaAttempt", "Product", "Stop", "Trip", "World",
]

# How far ahead the evening parking looks for the next departure.
NEXT_DEPARTURE_LOOKAHEAD_DAYS = 30
# last_fix never looks further back than this.
LAST_FIX_LOOKBACK = timedelta(days=7)
_SUMMARY_BLOCK_DAYS = 256
# Detailed plans are computed for aligned blocks of days: a block costs about what one day costs
# (numpy overhead dominates), and callers usually walk consecutive days of a device.
_PLAN_BLOCK_DAYS = 16
DAY_CACHE_SIZE = 4096


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class _Summary:
    """Per-day status, first departure and odometer of one device from activation to `end`."""

    first_ordinal: int
    status: np.ndarray
    first_departure_s: np.ndarray
    odometer_start_km: np.ndarray   # one more entry than days: [-1] is the odometer at the end

    def index_of(self, ordinal: int) -> int:
        return ordinal - self.first_ordinal


class World:
    """The synthetic fleet; see the module docstring for what it costs."""

    def __init__(self, seed: int = 42, n_devices: int = 200, now: Callable[[], datetime] | None = None) -> None:
        if n_devices < 1:
            raise ValueError(f"sandbox world: n_devices must be positive, got {n_devices}")
        self.seed = seed
        self.n_devices = n_devices
        self._now = now or _utcnow
        self.today: date = self._now().date()
        # the Monday the world's calendar is placed from (see the module docstring)
        self.anchor: date = self.today - timedelta(days=self.today.weekday())
        self.grid = StreetGrid.build(seed)
        self.accounts: list[Account] = build_accounts(seed)
        self.devices: list[Device]
        self.devices, self._homes = build_devices(seed, n_devices, self.accounts, self.grid, self.anchor)
        self._by_imei = {d.imei: d for d in self.devices}
        self._accounts_by_id = {a.account_id: a for a in self.accounts}
        self._children: dict[str, list[Account]] = {a.account_id: [] for a in self.accounts}
        for a in self.accounts:
            if a.parent_id is not None:
                self._children[a.parent_id].append(a)
        self._devices_of: dict[str, list[Device]] = {a.account_id: [] for a in self.accounts}
        for d in self.devices:
            self._devices_of[d.account_id].append(d)
        # Every vendor endpoint of a day asks for the same device-days (track list, trips, parking,
        # alarms...), and windows reach a second into the days either side: a cache smaller than
        # three days of the fleet would build each of them once per endpoint. A 10,000-device
        # world then holds up to ~1.8 GB of days, in the sandbox's process.
        day_cache = max(DAY_CACHE_SIZE, 3 * n_devices)
        self._day = lru_cache(maxsize=day_cache)(self._build_day)
        self._timeline = lru_cache(maxsize=day_cache)(self._build_timeline)
        # ~17 KB per device (three years of days): one per device, 170 MB for 10,000 devices
        self._summary = lru_cache(maxsize=max(4096, n_devices))(self._build_summary)
        self._plan_block = lru_cache(maxsize=2048)(self._build_plan_block)
        self._firmware = FirmwareBook(seed, self.devices, self.anchor)
        self._stock = StockBook(seed, self.devices, self.anchor)
        self.campaigns: list[Campaign] = self._firmware.campaigns
        self.products: list[Product] = self._stock.products
        self._terminal_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ fleet

    def now(self) -> datetime:
        """The sandbox clock (naive UTC)."""
        return self._now()

    def device(self, imei: str) -> Device:
        """The device with this IMEI; KeyError names the IMEI when there is none."""
        try:
            return self._by_imei[imei]
        except KeyError:
            raise KeyError(f"sandbox world: no device with IMEI {imei!r}") from None

    def is_activated(self, device: Device, at: datetime) -> bool:
        """Whether the device exists on its vendors' platforms at `at`: from 00:00 UTC of its
        activation day (the World generates its fixes from then), so before it no vendor lists it."""
        return device.activation_date <= at.date()

    def devices_on(self, platform: str, at: datetime | None = None) -> list[Device]:
        """Devices tracked on a platform ("tracksolid" | "navixy"); with `at`, only those activated by then."""
        if platform not in PLATFORMS:
            raise ValueError(f"sandbox world: unknown platform {platform!r}, expected one of {PLATFORMS}")
        return [d for d in self.devices if d.platform == platform and (at is None or self.is_activated(d, at))]

    def devices_of_account(self, account_id: str, at: datetime | None = None) -> list[Device]:
        """Devices owned directly by the account (not by its sub-accounts); with `at`, only those
        activated by then."""
        return [d for d in self._devices_of.get(account_id, []) if at is None or self.is_activated(d, at)]

    def child_accounts(self, account_id: str) -> list[Account]:
        """Direct sub-accounts."""
        return list(self._children.get(account_id, []))

    def account(self, account_id: str) -> Account:
        try:
            return self._accounts_by_id[account_id]
        except KeyError:
            raise KeyError(f"sandbox world: no account {account_id!r}") from None

    def root_account(self, platform: str) -> Account:
        if platform not in ROOT_ACCOUNT_ID:
            raise ValueError(f"sandbox world: unknown platform {platform!r}, expected one of {PLATFORMS}")
        return self._accounts_by_id[ROOT_ACCOUNT_ID[platform]]

    # ------------------------------------------------------------------ days

    def day(self, imei: str, day: date) -> DeviceDay:
        """Everything the device did and recorded on a UTC day (deterministic, cached)."""
        if isinstance(day, datetime):
            day = day.date()
        return self._day(self.device(imei).index, day)

    def motion(self, imei: str, day: date) -> timeline.Timeline:
        """The device's motion that UTC day (segments with their speeds, trips, parkings with their
        ignition): what the KPI truths in `kpis.py` measure, without sampling fixes."""
        if isinstance(day, datetime):
            day = day.date()
        return self._timeline(self.device(imei).index, day)[1]

    def odometer_km(self, imei: str, at: datetime) -> float:
        """The device odometer at an instant, without generating any fix.

        Before activation it is the odometer the vehicle had when the tracker was installed.
        """
        index = self.device(imei).index
        ordinal = at.date().toordinal()
        summary = self._summary_for(index, ordinal)
        j = summary.index_of(ordinal)
        if j < 0:
            return float(summary.odometer_start_km[0])
        at_midnight = float(summary.odometer_start_km[j])
        seconds = (at - datetime.combine(at.date(), time())).total_seconds()
        if seconds == 0 or summary.status[j] != STATUS_DRIVING:
            return at_midnight
        _, motion = self._timeline(index, at.date())
        return at_midnight + motion.distance_at(seconds) / 1000.0

    def last_fix(self, imei: str, at: datetime) -> dict | None:
        """The latest fix (by gps_time) the platform had received by `at`, at most 7 days old."""
        device = self.device(imei)
        oldest = at - LAST_FIX_LOOKBACK
        day = at.date()
        while day >= oldest.date() and day >= device.activation_date:
            points = self.day(imei, day).points
            seen = points.filter(
                (pl.col("received_at") <= at) & (pl.col("gps_time") <= at) & (pl.col("gps_time") >= oldest)
            )
            if seen.height:
                return seen.row(seen.height - 1, named=True)
            day -= timedelta(days=1)
        return None

    # ------------------------------------------------------------------ firmware (see firmware.py)

    def firmware_at(self, imei: str, at: datetime) -> str | None:
        """Version running at `at`; None for devices no firmware platform manages (Jimi).

        Before activation it is the version the device shipped with.
        """
        book = self._firmware.of(self.device(imei))
        return None if book is None else book.version_at(at)

    def ota_attempts(self, imei: str) -> list[OtaAttempt]:
        """Every OTA attempt of the device, past and future, by sent_at; [] for Jimi devices."""
        book = self._firmware.of(self.device(imei))
        return [] if book is None else list(book.attempts)

    def ota_attempts_updated(
        self, platform: str, start: datetime, end: datetime, at: datetime | None = None
    ) -> list[OtaAttempt]:
        """Attempts of a firmware platform's devices whose last update as of `at` (default: now)
        lies in [start, end), sorted by that update time: what the AOVX report query returns."""
        return self._firmware.updated(platform, start, end, self.now() if at is None else at)

    def aovx_terminal_id(self, imei: str) -> str:
        """AOVX's id of the device (32 upper-case hex); ValueError for devices not on AOVX."""
        return firmware.aovx_terminal_id(self.seed, self._aovx_device(imei).index)

    def aovx_terminal_num(self, imei: str) -> str:
        """AOVX's 12-digit device number."""
        return firmware.aovx_terminal_num(self.seed, self._aovx_device(imei).index)

    def imei_for_terminal(self, terminal_id: str) -> str:
        """Reverse of `aovx_terminal_id`; KeyError for an id no device of this world has."""
        if self._terminal_index is None:
            self._terminal_index = {
                firmware.aovx_terminal_id(self.seed, d.index): d.index for d in self.devices if d.firmware_platform == "aovx"
            }
        try:
            return self.devices[self._terminal_index[terminal_id]].imei
        except KeyError:
            raise KeyError(f"sandbox world: no AOVX terminal {terminal_id!r}") from None

    def _aovx_device(self, imei: str) -> Device:
        device = self.device(imei)
        if device.firmware_platform != "aovx":
            raise ValueError(f"sandbox world: device {imei} is not managed by AOVX ({device.manufacturer})")
        return device

    # ------------------------------------------------------------------ stock (see stock.py)

    def stock_on(self, product_id: str, day: date) -> int:
        """Stock on hand at the end of the UTC day (KeyError for an unknown product)."""
        return self._stock.stock_on(product_id, day)

    def activations_on(self, model: str, day: date) -> int:
        """Devices of the model activated (installed) that day: what its product lost."""
        return self._stock.activations_on(model, day)

    def deliveries_on(self, product_id: str, day: date) -> int:
        """Units delivered that day (regular and express)."""
        return self._stock.deliveries_on(product_id, day)

    def consumption_on(self, product_id: str, day: date) -> int:
        """Units installed that day: activations for a model's product, fitted units for an accessory."""
        return self._stock.consumption_on(product_id, day)

    # ------------------------------------------------------------------ internals

    def _plan_spec(self, index: int) -> DevicePlanSpec:
        h = self._homes
        return DevicePlanSpec(
            index=index,
            activation_ordinal=int(h.activation_ordinal[index]),
            home_u=float(h.u[index]),
            home_v=float(h.v[index]),
            home_axis=int(h.axis[index]),
            home_street=int(h.street[index]),
        )

    def _summary_for(self, index: int, ordinal: int) -> _Summary:
        """A summary reaching past `ordinal` + the lookahead; blocks keep the cache small."""
        first = int(self._homes.activation_ordinal[index])
        needed = max(ordinal + NEXT_DEPARTURE_LOOKAHEAD_DAYS + 2 - first, 1)
        blocks = -(-needed // _SUMMARY_BLOCK_DAYS)
        return self._summary(index, first + blocks * _SUMMARY_BLOCK_DAYS)

    def _build_summary(self, index: int, end_ordinal: int) -> _Summary:
        spec = self._plan_spec(index)
        ordinals = np.arange(spec.activation_ordinal, end_ordinal, dtype=np.int64)
        plans = plan_days(self.seed, self.grid, spec, ordinals)
        # cumsum is sequential, so every summary (whatever its end) agrees on shared days exactly
        km = np.concatenate([[0.0], np.cumsum(plans.day_m / 1000.0)])
        return _Summary(
            first_ordinal=spec.activation_ordinal,
            status=plans.status,
            first_departure_s=plans.first_departure_s.astype(np.int32),
            odometer_start_km=float(self._homes.initial_odometer_km[index]) + km,
        )

    def _context(self, index: int, day: date) -> timeline.DayContext:
        ordinal = day.toordinal()
        summary = self._summary_for(index, ordinal)
        j = summary.index_of(ordinal)
        odo = summary.odometer_start_km
        odo_start = float(odo[0]) if j < 0 else float(odo[j])
        odo_end = float(odo[0]) if j < 0 else float(odo[j + 1])
        return timeline.DayContext(
            seed=self.seed,
            grid=self.grid,
            device=self.devices[index],
            heartbeat_s=int(self._homes.heartbeat_s[index]),
            day=day,
            plans=self._plan_block(index, ordinal - ordinal % _PLAN_BLOCK_DAYS).row(ordinal % _PLAN_BLOCK_DAYS),
            odometer_start_km=odo_start,
            odometer_end_km=odo_end,
            # before activation there is no evening parking to end
            next_departure=self._next_departure(summary, j, day) if j >= 0 else datetime.combine(day, time()),
        )

    def _next_departure(self, summary: _Summary, j: int, day: date) -> datetime:
        """First departure after `day`: the end of that day's evening parking."""
        window = summary.status[j + 1 : j + 1 + NEXT_DEPARTURE_LOOKAHEAD_DAYS]
        hits = np.flatnonzero(window == STATUS_DRIVING)
        if len(hits) == 0:
            return datetime.combine(day + timedelta(days=NEXT_DEPARTURE_LOOKAHEAD_DAYS), time())
        ahead = int(hits[0]) + 1
        seconds = int(summary.first_departure_s[j + ahead])
        return datetime.combine(day + timedelta(days=ahead), time()) + timedelta(seconds=seconds)

    def _build_plan_block(self, index: int, first_ordinal: int) -> DayPlans:
        ordinals = np.arange(first_ordinal, first_ordinal + _PLAN_BLOCK_DAYS, dtype=np.int64)
        return plan_days(self.seed, self.grid, self._plan_spec(index), ordinals)

    def _build_timeline(self, index: int, day: date) -> tuple[timeline.DayContext, timeline.Timeline]:
        ctx = self._context(index, day)
        return ctx, timeline.build_timeline(ctx)

    def _build_day(self, index: int, day: date) -> DeviceDay:
        return daygen.generate_day(*self._timeline(index, day))
