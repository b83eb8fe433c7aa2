"""The fleet: accounts on each tracking platform and the devices on them.

Every device attribute is a hash of (seed, device index, attribute), computed for all indices at
once with numpy, so 10,000 devices build in tens of milliseconds and device i is the same whatever
the size of the fleet. The account tree depends on the seed only.

Activation days are placed relative to the world's anchor (the Monday of the week it was built in,
see `world.py`), so the fleet is still growing whenever the sandbox runs: most devices were
installed uniformly over 2.5 years ending 20 weeks before the anchor (the installed base); every
tenth device (index 7, 17, 27...) belongs to the install stream of the STREAM_WEEKS weeks ending
with the anchor's week, one stream device a day: the k-th is installed on day
`anchor + 6 - (3k mod 7) - 7 * (k div 7 mod STREAM_WEEKS)`. So a world of 68 devices or more has
an install on each day of the anchor's week (60 devices: on 6 of them; 20 devices: on 2), one of
138 devices or more on each of the 14 days from the Monday before the anchor to the anchor's
Sunday, and the 7 days before any day of the anchor's week (the demo's load) all have installs.
Installs of the anchor's week that lie after the sandbox clock's day belong to the world already
(every run of the week sees the same fleet) but no vendor lists them yet: a device exists on the
platforms from 00:00 UTC of its activation day (`World.is_activated`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from . import identifiers, rng
from .entities import CITY_CENTER, Account, Device
from .geo import StreetGrid, to_latlng

MANUFACTURER_SHARES = (("jimi", 0.45), ("teltonika", 0.35), ("aovx", 0.20))
MODELS = {
    "jimi": ("JC400P", "GT06E", "X3", "VL103M"),
    "teltonika": ("FMB920", "FMC130", "FMB140"),
    "aovx": ("AOVX-M1", "AOVX-C2"),
}
PLATFORM_OF = {"jimi": "tracksolid", "teltonika": "navixy", "aovx": "navixy"}
FIRMWARE_PLATFORM_OF = {"jimi": None, "teltonika": "teltonika_fota", "aovx": "aovx"}
ROOT_ACCOUNT_ID = {"tracksolid": "fleetco", "navixy": "fleetco-nvx"}
SUB_ACCOUNT_AREAS = ("lyon", "villeurbanne", "venissieux", "bron", "caluire", "oullins", "vaulx")
CHILD_SUFFIXES = ("night", "express", "rental")
ROOT_SHARE = 2 / 3

# The installed base: activations uniform over the days [anchor - BASE_FIRST_DAYS_BEFORE,
# anchor - BASE_LAST_DAYS_BEFORE] (2.5 years; a world anchored on 2026-11-16 has the installed
# base of the sandbox's first, fixed calendar: 2024-01-01 to 2026-06-30).
BASE_FIRST_DAYS_BEFORE = 1050
BASE_LAST_DAYS_BEFORE = 139
# The install stream (see the module docstring): every STREAM_EVERY-th device, over the
# STREAM_WEEKS weeks ending with the anchor's week.
STREAM_EVERY, STREAM_PHASE = 10, 7
STREAM_WEEKS = 20
LAPSED_CONTRACT_SHARE = 0.08
FIX_INTERVALS_S = (10, 15, 20, 30)
HEARTBEAT_INTERVALS_S = (900, 1200, 1800)
HOME_MAX_RADIUS_M = 9_000.0
ODOMETER_AT_ACTIVATION_KM = (5_000.0, 150_000.0)

VEHICLES = (
    "Renault Kangoo", "Peugeot Partner", "Citroen Berlingo", "Renault Master", "Ford Transit",
    "Fiat Ducato", "Mercedes Sprinter", "Volkswagen Crafter", "Iveco Daily", "Toyota Proace",
    "Renault Trafic", "Peugeot Expert", "Dacia Duster", "Renault Clio",
)
FIRST_NAMES = (
    "Camille", "Lucas", "Lea", "Hugo", "Chloe", "Louis", "Manon", "Nathan", "Ines", "Jules",
    "Sarah", "Karim", "Sofia", "Mehdi", "Julie", "Thomas", "Emma", "Yanis", "Laura", "Antoine",
)
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "Andre", "Mercier", "Benali", "Nguyen",
)


@dataclass(frozen=True)
class HomeSpec:
    """Private per-device facts the day generator needs beyond the public Device record."""

    u: np.ndarray            # home in grid coordinates, on a street
    v: np.ndarray
    axis: np.ndarray         # 0 = on a constant-u street, 1 = on a constant-v street
    street: np.ndarray       # index of that street
    initial_odometer_km: np.ndarray
    heartbeat_s: np.ndarray  # ignition-off heartbeat interval
    activation_ordinal: np.ndarray


def build_accounts(seed: int) -> list[Account]:
    """Root + 3-4 sub-accounts per platform; one sub-account has a child (two levels)."""
    accounts: list[Account] = []
    for platform in ("tracksolid", "navixy"):
        root = ROOT_ACCOUNT_ID[platform]
        accounts.append(Account(root, f"FleetCo ({platform})", None, platform))
        order = np.argsort(rng.uniform(seed, "account-areas", platform, np.arange(len(SUB_ACCOUNT_AREAS))))
        n_subs = 3 + int(rng.uniform(seed, "account-count", platform)[0] * 2)
        areas = [SUB_ACCOUNT_AREAS[i] for i in order[:n_subs]]
        parent_area = areas[int(rng.uniform(seed, "account-parent", platform)[0] * n_subs)]
        suffix = CHILD_SUFFIXES[int(rng.uniform(seed, "account-child", platform)[0] * len(CHILD_SUFFIXES))]
        for area in areas:
            sub_id = f"{root}-{area}"
            accounts.append(Account(sub_id, f"FleetCo {area.capitalize()}", root, platform))
            if area == parent_area:
                accounts.append(
                    Account(f"{sub_id}-{suffix}", f"FleetCo {area.capitalize()} {suffix}", sub_id, platform)
                )
    return accounts


def activation_days_before(seed: int, idx: np.ndarray) -> np.ndarray:
    """How many days before the world's anchor each device was activated (0 = the anchor itself,
    -6 = the anchor's Sunday, 1 = the Sunday before)."""
    span = BASE_FIRST_DAYS_BEFORE - BASE_LAST_DAYS_BEFORE + 1
    base = BASE_FIRST_DAYS_BEFORE - (rng.uniform(seed, "activation", idx) * span).astype(np.int64)
    k = idx // STREAM_EVERY
    stream = (3 * k) % 7 - 6 + 7 * ((k // 7) % STREAM_WEEKS)
    return np.where(idx % STREAM_EVERY == STREAM_PHASE, stream, base)


def build_devices(
    seed: int, n_devices: int, accounts: list[Account], grid: StreetGrid, anchor: date
) -> tuple[list[Device], HomeSpec]:
    """All devices, vectorised over indices; returns the public records and the private spec.

    Every device is activated by the Sunday of the anchor's week (see the module docstring).
    """
    idx = np.arange(n_devices, dtype=np.int64)

    def u(tag: str) -> np.ndarray:
        return rng.uniform(seed, tag, idx)

    u_man = u("manufacturer")
    names = np.array([name for name, _ in MANUFACTURER_SHARES])
    upper_bounds = np.cumsum([share for _, share in MANUFACTURER_SHARES])[:-1]
    manufacturers = names[np.searchsorted(upper_bounds, u_man, side="right")]
    u_model = u("model")
    models = [MODELS[m][int(x * len(MODELS[m]))] for m, x in zip(manufacturers.tolist(), u_model.tolist())]

    sub_accounts = {
        p: [a.account_id for a in accounts if a.platform == p and a.parent_id is not None] for p in ("tracksolid", "navixy")
    }
    u_root, u_sub = u("account-root"), u("account-sub")

    activation_ordinals = anchor.toordinal() - activation_days_before(seed, idx)
    # Most customers renew (contracts run to 2028+); ~8% let a one-year contract lapse, so a few
    # devices are expired and report (0, 0) positions, as the real platform does.
    years = np.where(u("contract-lapsed") < LAPSED_CONTRACT_SHARE, 1, 4)
    fix_intervals = np.array(FIX_INTERVALS_S)[(u("fix-interval") * len(FIX_INTERVALS_S)).astype(int)]
    heartbeats = np.array(HEARTBEAT_INTERVALS_S)[(u("heartbeat") * len(HEARTBEAT_INTERVALS_S)).astype(int)]
    speed_limits = 90 + 5 * (u("speed-limit") * 5).astype(np.int64)
    lo, hi = ODOMETER_AT_ACTIVATION_KM
    initial_odo = np.round(lo + (hi - lo) * u("odometer"), 1)

    # Homes: uniform over a 9 km disk (the city is 12 km, destinations stay within 8 km of home).
    r = HOME_MAX_RADIUS_M * np.sqrt(u("home-r"))
    theta = 2 * math.pi * u("home-theta")
    axis = (u("home-axis") < 0.5).astype(np.int64)
    hu, hv, street = grid.snap(r * np.cos(theta), r * np.sin(theta), axis)
    hx, hy = grid.to_xy(hu, hv)
    home_lat, home_lng = to_latlng(hx, hy, *CITY_CENTER)

    imei_list = identifiers.imeis(seed, idx, models)
    iccid_list = identifiers.iccids(seed, idx)
    msisdn_list = identifiers.msisdns(seed, idx)
    plate_list = identifiers.plates(seed, idx)
    vehicles = (u("vehicle") * len(VEHICLES)).astype(int)
    firsts = (u("driver-first") * len(FIRST_NAMES)).astype(int)
    lasts = (u("driver-last") * len(LAST_NAMES)).astype(int)

    devices = []
    for i in range(n_devices):
        manufacturer = str(manufacturers[i])
        platform = PLATFORM_OF[manufacturer]
        if u_root[i] < ROOT_SHARE:
            account_id = ROOT_ACCOUNT_ID[platform]
        else:
            subs = sub_accounts[platform]
            account_id = subs[int(u_sub[i] * len(subs))]
        activation = date.fromordinal(int(activation_ordinals[i]))
        devices.append(
            Device(
                index=i,
                imei=imei_list[i],
                manufacturer=manufacturer,
                model=models[i],
                platform=platform,
                firmware_platform=FIRMWARE_PLATFORM_OF[manufacturer],
                account_id=account_id,
                sim_iccid=iccid_list[i],
                sim_msisdn=msisdn_list[i],
                activation_date=activation,
                expiration_date=_add_years(activation, int(years[i])),
                device_name=f"{models[i]}-{i:04d}",
                vehicle_name=f"{VEHICLES[vehicles[i]]} {i}",
                vehicle_number=plate_list[i],
                driver_name=f"{FIRST_NAMES[firsts[i]]} {LAST_NAMES[lasts[i]]}",
                fix_interval_s=int(fix_intervals[i]),
                home_lat=float(home_lat[i]),
                home_lng=float(home_lng[i]),
                speed_limit_kmh=int(speed_limits[i]),
            )
        )
    spec = HomeSpec(
        u=hu,
        v=hv,
        axis=axis,
        street=street,
        initial_odometer_km=initial_odo,
        heartbeat_s=heartbeats,
        activation_ordinal=activation_ordinals,
    )
    return devices, spec


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:   # 29 February
        return d.replace(year=d.year + years, day=28)
