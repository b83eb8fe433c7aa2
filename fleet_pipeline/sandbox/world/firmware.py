"""Firmware of the sandbox fleet: OTA campaigns, each device's attempts, the version it runs.

Campaigns depend on the seed and the world's anchor (the Monday of the week it was built in): every
managed model has a campaign started 7-15 days before the anchor that runs past the end of the
anchor's week (so for any day of that week it is in progress over the 7 days before, the demo's
load), and most have an earlier, completed one 7-21 months before. A device's attempts are a pure function of (seed, device
index, its activation date, its model's campaigns) and of its cheap day statuses
(`plan.day_statuses`, no route or fix is planned), so a device is the same in a world of 200 or
10,000 and costs nothing until asked about. The history of an attempt is the whole truth,
future transitions included; `status_at(at)` is what a platform can show at `at`.

How a campaign treats a device (the rules the tests check):
* scheduled on the day of its stage: a hash of (campaign, device) picks the stage, so the share
  of the model's devices scheduled by a stage's day is about that stage's cumulative share; a
  device activated during the rollout is scheduled on its activation day at the earliest;
* only devices running the campaign's `from_version` are scheduled; devices activated after the
  last stage ship with the target version;
* online that day (status parked or driving): 1 (sent) at an office-hours time, 2 (downloading)
  1-15 min later, then 3 (succeeded) 5-40 min later or, about 10 % of the time, 4 (failed);
* offline that day: the command fails (-1) or stays "sent" until the device's next online day,
  when it downloads and ends in 3 or 4;
* after -1 or 4 the campaign retries on the next day the device is online, at most 3 attempts;
* about 5 % of devices are stubborn: every attempt fails, so they never upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import numpy as np

from . import rng
from .entities import FIRMWARE_PLATFORMS, Device
from .fleet import FIRMWARE_PLATFORM_OF, MODELS
from .identifiers import scrambled
from .plan import STATUS_DRIVING, STATUS_PARKED, day_statuses

OTA_STATUS = {-1: "command_failed", 1: "sent", 2: "downloading", 3: "succeeded", 4: "failed"}

# Version lines per firmware-managed model, oldest first: the factory version before any
# campaign, then each campaign's target. Teltonika numbering as its FOTA shows it
# ("03.29.00.Rev.300"); AOVX's VERSION is the firmware file's base name (the doc's example is
# "natives_blob").
VERSIONS = {
    "FMB920": ("03.27.14.Rev.00", "03.28.07.Rev.00", "03.29.00.Rev.300"),
    "FMC130": ("03.27.10.Rev.03", "03.28.10.Rev.00", "03.29.01.Rev.310"),
    "FMB140": ("03.27.14.Rev.02", "03.28.07.Rev.02", "03.29.00.Rev.302"),
    "AOVX-M1": ("M1_V1.3.8", "M1_V1.4.2", "M1_V1.5.0"),
    "AOVX-C2": ("C2_V2.0.9", "C2_V2.1.4", "C2_V2.2.0"),
}
# Rollout shapes: (days after start, cumulative share scheduled). Every one ends at 21 or 28
# days, so a campaign started 7-15 days before the anchor still schedules devices on the anchor's
# Sunday, and has no gap between stages over 7 days before day 14.
STAGE_TEMPLATES = (
    ((0, 0.05), (2, 0.2), (7, 0.5), (14, 0.8), (21, 1.0)),
    ((0, 0.1), (3, 0.3), (7, 0.6), (14, 0.85), (21, 1.0)),
    ((0, 0.02), (7, 0.25), (14, 0.6), (28, 1.0)),
)
# Start windows in days before the world's anchor, (earliest, latest): the running campaign of
# every model; the earlier one, when a model has it, 7-21 months before (a world anchored on
# 2026-11-16 has the earlier campaigns of the sandbox's first, fixed calendar).
RUNNING_START_DAYS_BEFORE = (15, 7)
EARLIER_START_DAYS_BEFORE = (625, 200)
EARLIER_CAMPAIGN_CHANCE = 0.75

FAIL_CHANCE = 0.10             # an online attempt ends in 4
OFFLINE_COMMAND_FAIL_CHANCE = 0.5   # offline on the day: -1 at once, else "sent" until it returns
STUBBORN_SHARE = 0.05          # devices whose every attempt fails
STUBBORN_COMMAND_FAIL_CHANCE = 0.3
MAX_ATTEMPTS = 3
SEND_WINDOW_S = (6 * 3600, 18 * 3600)          # operators issue commands in office hours (UTC)
RECONNECT_WINDOW_S = (4 * 3600 + 1800, 9 * 3600)   # a device back online reconnects in the morning
DOWNLOAD_START_MS = (60_000, 900_000)
INSTALL_MS = (300_000, 2_400_000)
# Attempts of a campaign lie within this many days after its last stage (retries and offline
# spells of a few days each): queries outside a campaign's span skip its devices entirely.
ATTEMPT_HORIZON_DAYS = 40


@dataclass(frozen=True)
class Campaign:
    campaign_id: str           # "<model lower-case>-<yyyy>-<mm>" of the start, e.g. "fmb920-2026-11"
    platform: str              # "teltonika_fota" | "aovx"
    model: str
    from_version: str
    target_version: str
    start_day: date
    stages: tuple[tuple[int, float], ...]
    url: str

    @property
    def end_day(self) -> date:
        """The last stage's day: devices activated after it ship with the target version."""
        return self.start_day + timedelta(days=self.stages[-1][0])


@dataclass(frozen=True)
class OtaAttempt:
    attempt_id: str            # 32 upper-case hex chars (AOVX "mark")
    imei: str
    campaign_id: str
    version: str               # target version of this attempt
    url: str
    upgrade_type: str          # AOVX upgradeInfo TYPE/MODE/PROTOCOL, as strings "0"/"1"
    upgrade_mode: str
    protocol: str
    sent_at: datetime
    history: tuple[tuple[datetime, int], ...]   # (time, status), first = (sent_at, 1 or -1)

    def status_at(self, at: datetime) -> int | None:
        """The latest status with time <= at; None before the command was sent."""
        seen = self._latest(at)
        return None if seen is None else seen[1]

    def last_update_at(self, at: datetime) -> datetime | None:
        """When the status shown at `at` was reached; None before the command was sent."""
        seen = self._latest(at)
        return None if seen is None else seen[0]

    @property
    def succeeded_at(self) -> datetime | None:
        """Time of the status-3 transition, if this attempt ever succeeds."""
        return next((t for t, s in self.history if s == 3), None)

    def _latest(self, at: datetime) -> tuple[datetime, int] | None:
        seen = None
        for step in self.history:
            if step[0] > at:
                break
            seen = step
        return seen


@dataclass(frozen=True)
class DeviceFirmware:
    """Everything firmware about one device: what it shipped with and every OTA attempt."""

    factory_version: str
    attempts: tuple[OtaAttempt, ...]   # sorted by sent_at

    def version_at(self, at: datetime) -> str:
        version = self.factory_version
        for attempt in self.attempts:
            done = attempt.succeeded_at
            if done is not None and done <= at:
                version = attempt.version
        return version


def _unit(seed: int, *parts: int | str) -> float:
    """One uniform draw in [0, 1) keyed by (seed, parts)."""
    return (rng.key(seed, *parts) >> 11) * (1.0 / (1 << 53))


def _hex32(seed: int, *parts: int | str) -> str:
    return f"{rng.key(seed, *parts, 'hi'):016X}{rng.key(seed, *parts, 'lo'):016X}"


def _day_in(seed: int, anchor: date, days_before: tuple[int, int], *parts: int | str) -> date:
    """A day in [anchor - days_before[0], anchor - days_before[1]], drawn from (seed, parts)."""
    span = days_before[0] - days_before[1] + 1
    return anchor - timedelta(days=days_before[0] - int(_unit(seed, *parts) * span))


def firmware_models(platform: str) -> tuple[str, ...]:
    """Models whose firmware a firmware platform manages, in the fleet's order."""
    return tuple(m for maker, models in MODELS.items() if FIRMWARE_PLATFORM_OF[maker] == platform for m in models)


def _firmware_url(platform: str, model: str, version: str, slot: int) -> str:
    # `.invalid` never resolves: nobody downloads a sandbox firmware by accident
    if platform == "aovx":
        return f"http://fota.aovx.invalid:8888/FOTA/{101 + slot}/{version}.bin"
    return f"https://fota.teltonika.invalid/firmware/{model}/{model}_{version}.xim"


def build_campaigns(seed: int, anchor: date) -> list[Campaign]:
    """Per managed model: a campaign running through the anchor's week (started 7-15 days before
    the anchor) and usually an earlier one.

    The first model of each platform always has the earlier one, so every platform shows a
    completed rollout beside the running one.
    """
    campaigns: list[Campaign] = []
    for platform in FIRMWARE_PLATFORMS:
        for position, model in enumerate(firmware_models(platform)):
            earlier = position == 0 or _unit(seed, "campaign-earlier", model) < EARLIER_CAMPAIGN_CHANCE
            windows = [EARLIER_START_DAYS_BEFORE, RUNNING_START_DAYS_BEFORE] if earlier else [RUNNING_START_DAYS_BEFORE]
            line = VERSIONS[model][-(len(windows) + 1):]
            for k, window in enumerate(windows):
                start = _day_in(seed, anchor, window, "campaign-start", model, k)
                template = STAGE_TEMPLATES[int(_unit(seed, "campaign-stages", model, k) * len(STAGE_TEMPLATES))]
                campaigns.append(
                    Campaign(
                        campaign_id=f"{model.lower()}-{start:%Y-%m}",
                        platform=platform,
                        model=model,
                        from_version=line[k],
                        target_version=line[k + 1],
                        start_day=start,
                        stages=template,
                        url=_firmware_url(platform, model, line[k + 1], len(campaigns)),
                    )
                )
    return campaigns


def scheduled_day(seed: int, campaign: Campaign, index: int) -> date:
    """The stage day a device falls in (before any activation-date adjustment)."""
    u = _unit(seed, "ota-schedule", campaign.campaign_id, index)
    offset = next(days for days, share in campaign.stages if u < share)
    return campaign.start_day + timedelta(days=offset)


def is_stubborn(seed: int, index: int) -> bool:
    return _unit(seed, "ota-stubborn", index) < STUBBORN_SHARE


def first_day(seed: int, device: Device, campaign: Campaign) -> date | None:
    """Day of the device's first attempt in the campaign, None if it ships with the target.

    Whether it is really scheduled also depends on the version it runs then (`device_firmware`).
    """
    if device.activation_date > campaign.end_day:
        return None
    return max(scheduled_day(seed, campaign, device.index), device.activation_date)


def device_firmware(seed: int, device: Device, campaigns: Sequence[Campaign]) -> DeviceFirmware:
    """Factory version and all attempts of one device; `campaigns` = its model's, oldest first."""
    if not campaigns:
        return DeviceFirmware(factory_version=VERSIONS[device.model][-1], attempts=())
    factory = campaigns[0].from_version
    for c in campaigns:
        if device.activation_date > c.end_day:
            factory = c.target_version
    days = [first_day(seed, device, c) for c in campaigns]
    scheduled = [d for d in days if d is not None]
    if not scheduled:
        return DeviceFirmware(factory_version=factory, attempts=())
    # one status lookup covering every campaign's days (the per-call overhead dominates)
    origin = min(scheduled)
    span = (max(scheduled) - origin).days + ATTEMPT_HORIZON_DAYS
    ordinals = np.arange(origin.toordinal(), origin.toordinal() + span, dtype=np.int64)
    status = day_statuses(seed, device.index, device.activation_date.toordinal(), ordinals)
    online = (status == STATUS_PARKED) | (status == STATUS_DRIVING)
    version, upgraded_at = factory, None
    attempts: list[OtaAttempt] = []
    for c, day in zip(campaigns, days):
        if day is None:
            continue
        if version != c.from_version or (upgraded_at is not None and upgraded_at >= datetime.combine(day, time())):
            continue   # still on an older version (a stubborn device): this campaign skips it
        offset = (day - origin).days
        mine = _campaign_attempts(seed, device, c, day, online[offset : offset + ATTEMPT_HORIZON_DAYS])
        attempts.extend(mine)
        done = mine[-1].succeeded_at
        if done is not None:
            version, upgraded_at = c.target_version, done
    return DeviceFirmware(factory_version=factory, attempts=tuple(attempts))


class _Draws:
    """Uniform draws of one attempt: slot k is a splitmix64 step away from the attempt's key."""

    def __init__(self, base: int) -> None:
        self._base, self._k = base, 0

    def random(self) -> float:
        self._k += 1
        return (rng.mix64(self._base + self._k * 0x9E3779B97F4A7C15) >> 11) * (1.0 / (1 << 53))

    def integers(self, low: int, high: int) -> int:
        """An integer in [low, high)."""
        return low + int(self.random() * (high - low))


def _campaign_attempts(seed: int, device: Device, c: Campaign, first: date, online: np.ndarray) -> list[OtaAttempt]:
    """Attempts in one campaign; online[j] tells whether the device is online on first + j days."""
    stubborn = is_stubborn(seed, device.index)
    mode = "1" if _unit(seed, "ota-mode", c.campaign_id) < 0.5 else "0"
    attempts: list[OtaAttempt] = []
    j = 0   # the attempt's day, in days after `first`
    for n in range(MAX_ATTEMPTS):
        draws = _Draws(rng.key(seed, "ota-attempt", device.index, c.campaign_id, n))
        history, failed = _one_attempt(draws, first, j, online, stubborn)
        attempts.append(
            OtaAttempt(
                attempt_id=_hex32(seed, "ota-mark", device.index, c.campaign_id, n),
                imei=device.imei,
                campaign_id=c.campaign_id,
                version=c.target_version,
                url=c.url,
                upgrade_type="0",
                upgrade_mode=mode,
                protocol="1",
                sent_at=history[0][0],
                history=history,
            )
        )
        if not failed:
            break
        # retry on the next day the device is online after the day the failure was seen
        failed_j = (history[-1][0].date() - first).days
        later = np.flatnonzero(online[failed_j + 1 :])
        if len(later) == 0:
            break
        j = failed_j + 1 + int(later[0])
    return attempts


def _one_attempt(
    g: _Draws, first: date, j: int, online: np.ndarray, stubborn: bool
) -> tuple[tuple[tuple[datetime, int], ...], bool]:
    """History of one attempt sent on day first + j, and whether it ended in -1 or 4.

    A command left "sent" on a device that does not come back within the horizon stays at 1 and
    counts as not failed (there is nothing to retry on).
    """
    def at(day_j: int, window: tuple[int, int]) -> datetime:
        ms = g.integers(window[0] * 1000, window[1] * 1000)
        return datetime.combine(first + timedelta(days=day_j), time()) + timedelta(milliseconds=ms)

    sent = at(j, SEND_WINDOW_S)
    start = sent
    if not online[j]:
        if g.random() < OFFLINE_COMMAND_FAIL_CHANCE:
            return ((sent, -1),), True
        back = np.flatnonzero(online[j + 1 :])
        if len(back) == 0:
            return ((sent, 1),), False
        start = at(j + 1 + int(back[0]), RECONNECT_WINDOW_S)
    elif stubborn and g.random() < STUBBORN_COMMAND_FAIL_CHANCE:
        return ((sent, -1),), True
    downloading = start + timedelta(milliseconds=g.integers(*DOWNLOAD_START_MS))
    failed = stubborn or g.random() < FAIL_CHANCE
    end = downloading + timedelta(milliseconds=g.integers(*INSTALL_MS))
    return ((sent, 1), (downloading, 2), (end, 4 if failed else 3)), failed


class FirmwareBook:
    """The world's firmware facts, computed per device on demand and cached."""

    def __init__(self, seed: int, devices: Sequence[Device], anchor: date) -> None:
        self.seed = seed
        self.campaigns = build_campaigns(seed, anchor)
        self._devices = devices
        self._by_model: dict[str, list[Campaign]] = {}
        for c in sorted(self.campaigns, key=lambda c: c.start_day):
            self._by_model.setdefault(c.model, []).append(c)
        # bounded by the fleet size; a device's record is a few hundred bytes
        self._firmware = lru_cache(maxsize=None)(self._build)

    def of(self, device: Device) -> DeviceFirmware | None:
        """None for devices whose firmware no platform manages (Jimi)."""
        if device.firmware_platform is None:
            return None
        return self._firmware(device.index)

    def _build(self, index: int) -> DeviceFirmware:
        device = self._devices[index]
        return device_firmware(self.seed, device, self._by_model.get(device.model, []))

    def updated(self, platform: str, start: datetime, end: datetime, at: datetime) -> list[OtaAttempt]:
        """Attempts of the platform's devices whose last update as of `at` is in [start, end)."""
        if platform not in FIRMWARE_PLATFORMS:
            raise ValueError(f"sandbox world: unknown firmware platform {platform!r}, expected one of {FIRMWARE_PLATFORMS}")
        horizon = min(end, at + timedelta(microseconds=1))
        models = {
            model
            for model, campaigns in self._by_model.items()
            if any(
                datetime.combine(c.start_day, time()) < horizon
                and start < datetime.combine(c.end_day + timedelta(days=ATTEMPT_HORIZON_DAYS + 1), time())
                for c in campaigns
            )
        }
        out: list[tuple[datetime, str, OtaAttempt]] = []
        for device in self._devices:
            if device.firmware_platform != platform or device.model not in models:
                continue
            days = [first_day(self.seed, device, c) for c in self._by_model[device.model]]
            if all(d is None or datetime.combine(d, time()) >= horizon for d in days):
                continue   # nothing sent yet by `at` (or before `end`): skip the expensive part
            for attempt in self._firmware(device.index).attempts:
                seen = attempt.last_update_at(at)
                if seen is not None and start <= seen < end:
                    out.append((seen, attempt.attempt_id, attempt))
        out.sort(key=lambda row: row[:2])
        return [row[2] for row in out]


def aovx_terminal_id(seed: int, index: int) -> str:
    """The AOVX system's device id: 32 upper-case hex chars, like the doc's "1957EE0C...B6"."""
    return _hex32(seed, "aovx-terminal-id", index)


def aovx_terminal_num(seed: int, index: int) -> str:
    """The AOVX device number: 12 digits like the doc's "344050190425", unique per index."""
    serial = int(scrambled(seed, "aovx-terminal-num", np.array([index]), 10**8)[0])
    return f"3440{serial:08d}"
