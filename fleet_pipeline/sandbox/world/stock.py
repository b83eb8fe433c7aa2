"""Stock of the sandbox company: products (one per tracker model plus accessories) and daily stock.

The product list depends on the seed only. Stock movements come from the fleet: every device
installed (its activation day) takes one unit of its model's product and, deterministically per
(device, accessory), some accessories. So stock is a function of the world's size and anchor
(the Monday of the week it was built in), which is right: stock belongs to the company's whole
fleet. Each product's history is walked once, day by day from the first activation to
WALK_AHEAD_DAYS after the anchor, and cached; any day is then an array lookup (constant before and
after the walk).

Replenishment is a weekly order-up-to policy: every Monday morning each product whose stock is
below its target level is ordered up to it, and the supplier delivers on the Thursday of the same
week. The target covers TARGET_COVER_DAYS of the product's mean daily demand in this world, so 60
or 10,000 devices both give a plausible saw-tooth, and since the fleet keeps growing (installs on
every day of the anchor's week and the weeks before it, see `fleet.py`) stock moves in every
recent week: a world of 200 devices has installs on every day of the anchor's week and the week
before it and a delivery every Thursday up to the anchor's week. Installs are
booked when they happen: a week whose installs exceed what is on hand leaves the product oversold
(negative stock) until Thursday's delivery, as a real back office shows it. On every day
stock_on(d) == stock_on(d - 1) - consumption_on(d) + deliveries_on(d).

One accessory per seed (never one of the two always stocked) is not counted: the back office keeps
no stock figure for it, so `stock_on` is None for it on every day (Telesto serves "").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np

from . import rng
from .entities import Device
from .fleet import BASE_FIRST_DAYS_BEFORE, MODELS

# The walk covers [anchor - BASE_FIRST_DAYS_BEFORE - 1, anchor + WALK_AHEAD_DAYS]; it starts before
# the first activation, and nothing is installed after the anchor's Sunday, so stock is constant
# outside it.
WALK_AHEAD_DAYS = 14
INSTALLING_DAYS_AFTER_ANCHOR = 7   # the anchor's week installs too (its Monday to its Sunday)
ORDER_WEEKDAY = 0           # Monday: the week's order, up to the target level
DELIVERY_WEEKDAY = 3        # Thursday: the supplier delivers that week's order
TARGET_COVER_DAYS = 14      # target level: two weeks of mean demand (a week's review + the lead)
MIN_TARGET = 3
# GS1 France company prefix range starts at 300; 376 + a 4-digit company number is plausible
EAN_PREFIX = "3760"
NO_EAN_CHANCE = 0.25        # accessories without a barcode (served as "")

MANUFACTURER_NAMES = {"jimi": "Jimi IoT", "teltonika": "Teltonika", "aovx": "AOVX"}
# Models the sandbox treats as fitted through the OBD-II port (they take a Y cable).
OBD_MODELS = ("VL103M", "FMB140", "AOVX-C2")


@dataclass(frozen=True)
class Product:
    product_id: str          # 24 lower-case hex chars
    name: str
    ean_upc: str | None      # 13-digit EAN with a valid check digit; None for a few ("" on the wire)
    model: str | None        # the device model this product is; None for accessories
    created: datetime
    counted: bool = True     # False: the back office keeps no stock figure (Telesto serves "")


@dataclass(frozen=True)
class AccessoryRule:
    """Share of a model's installs that take one unit of the accessory."""

    name: str
    default_share: float
    share_by_model: tuple[tuple[str, float], ...] = ()

    def share(self, model: str) -> float:
        return dict(self.share_by_model).get(model, self.default_share)


_TELTONIKA = MODELS["teltonika"]
# The first two are always stocked; 4-8 of the others are, depending on the seed.
ACCESSORIES = (
    AccessoryRule("Relay kit 12V", 0.30),
    AccessoryRule("OBD-II Y cable", 0.0, tuple((m, 0.85) for m in OBD_MODELS)),
    AccessoryRule("Relay kit 24V", 0.06),
    AccessoryRule("SOS panic button", 0.10),
    AccessoryRule("Backup battery pack", 0.15),
    AccessoryRule("Teltonika power cable 3-pin", 0.0, tuple((m, 0.60) for m in _TELTONIKA)),
    AccessoryRule("External GPS antenna", 0.04, (("GT06E", 0.50), ("JC400P", 0.20))),
    AccessoryRule("Magnetic mount", 0.12),
    AccessoryRule("1-Wire temperature sensor", 0.0, tuple((m, 0.05) for m in _TELTONIKA)),
    AccessoryRule("Fuse holder 2A", 0.40),
)
MIN_ACCESSORIES, MAX_ACCESSORIES = 6, 10


def ean13_check_digit(body12: str) -> int:
    """GS1 check digit: weights 1, 3, 1, 3... from the left over the first 12 digits."""
    total = sum(int(c) * (3 if k % 2 else 1) for k, c in enumerate(body12))
    return (10 - total % 10) % 10


def ean13_valid(code: str) -> bool:
    return len(code) == 13 and code.isdigit() and ean13_check_digit(code[:12]) == int(code[12])


def _unit(seed: int, *parts: int | str) -> float:
    return (rng.key(seed, *parts) >> 11) * (1.0 / (1 << 53))


def _product_id(seed: int, name: str) -> str:
    """24 lower-case hex chars (Telesto ids look like MongoDB ObjectIds)."""
    return f"{rng.key(seed, 'product-id', name):016x}{rng.key(seed, 'product-id-2', name) >> 32:08x}"


def _ean(seed: int, name: str) -> str:
    body = f"{EAN_PREFIX}{rng.key(seed, 'product-ean', name) % 10**8:08d}"
    return body + str(ean13_check_digit(body))


def _created(seed: int, name: str, first: datetime, days: int) -> datetime:
    seconds = int(_unit(seed, "product-created", name) * days * 86_400)
    return first + timedelta(seconds=seconds)


def build_products(seed: int) -> tuple[list[Product], dict[str, AccessoryRule]]:
    """Products (models first, in the fleet's order, then accessories) and accessory rules by id."""
    products: list[Product] = []
    for maker, models in MODELS.items():
        for model in models:
            name = model.replace("-", " ") if maker == "aovx" else f"{MANUFACTURER_NAMES[maker]} {model}"
            products.append(
                Product(
                    product_id=_product_id(seed, name),
                    name=name,
                    ean_upc=_ean(seed, name),
                    model=model,
                    # catalogued in the months before the first installs
                    created=_created(seed, name, datetime(2023, 9, 1, 8), 100),
                )
            )
    optional = sorted(ACCESSORIES[2:], key=lambda r: _unit(seed, "accessory-order", r.name))
    n_optional = MIN_ACCESSORIES - 2 + int(_unit(seed, "accessory-count") * (MAX_ACCESSORIES - MIN_ACCESSORIES + 1))
    rules = [*ACCESSORIES[:2], *optional[:n_optional]]
    chosen: dict[str, AccessoryRule] = {}
    accessories: list[Product] = []
    for rule in rules:
        product_id = _product_id(seed, rule.name)
        no_ean = _unit(seed, "product-no-ean", rule.name) < NO_EAN_CHANCE
        accessories.append(
            Product(
                product_id=product_id,
                name=rule.name,
                ean_upc=None if no_ean else _ean(seed, rule.name),
                model=None,
                created=_created(seed, rule.name, datetime(2023, 6, 1, 8), 700),
            )
        )
        chosen[product_id] = rule
    if all(p.ean_upc is not None for p in accessories):
        # a catalogue always has a few unlabelled items: keep at least one, the client must cope
        last = accessories[-1]
        accessories[-1] = Product(last.product_id, last.name, None, None, last.created)
    # one optional accessory is not counted: a blank stock figure the client must keep
    uncounted = min(range(2, len(accessories)), key=lambda k: _unit(seed, "product-uncounted", accessories[k].name))
    accessories[uncounted] = replace(accessories[uncounted], counted=False)
    return products + accessories, chosen


@dataclass(frozen=True)
class StockHistory:
    """End-of-day stock, consumption and deliveries of one product over the walk."""

    target: int
    stock: np.ndarray
    consumption: np.ndarray
    deliveries: np.ndarray


class StockBook:
    """The world's products and stock; consumption arrays are built on first use."""

    def __init__(self, seed: int, devices: Sequence[Device], anchor: date) -> None:
        self.seed = seed
        self.products, self._rules = build_products(seed)
        self._by_id = {p.product_id: p for p in self.products}
        self._devices = devices
        self._anchor = anchor
        self._first = anchor - timedelta(days=BASE_FIRST_DAYS_BEFORE + 1)
        self._n_days = (anchor - self._first).days + 1 + WALK_AHEAD_DAYS
        self._offsets: np.ndarray | None = None
        self._models: np.ndarray | None = None
        self._histories: dict[str, StockHistory] = {}
        self._activations: dict[str, np.ndarray] = {}

    def product(self, product_id: str) -> Product:
        try:
            return self._by_id[product_id]
        except KeyError:
            raise KeyError(f"sandbox world: no product {product_id!r}") from None

    def activations_on(self, model: str, day: date) -> int:
        known = {m for models in MODELS.values() for m in models}
        if model not in known:
            raise ValueError(f"sandbox world: unknown device model {model!r}")
        return self._value(self._activations_of(model), day)

    def consumption_on(self, product_id: str, day: date) -> int:
        return self._value(self._history(product_id).consumption, day)

    def deliveries_on(self, product_id: str, day: date) -> int:
        return self._value(self._history(product_id).deliveries, day)

    def stock_on(self, product_id: str, day: date) -> int | None:
        """Stock at the end of the UTC day (negative when oversold); None for an uncounted product."""
        h = self._history(product_id)
        if not self.product(product_id).counted:
            return None
        j = self._day_index(day)
        if j < 0:
            return h.target
        return int(h.stock[min(j, len(h.stock) - 1)])

    # ------------------------------------------------------------------ internals

    def _day_index(self, day: date) -> int:
        if isinstance(day, datetime):
            day = day.date()
        return (day - self._first).days

    def _value(self, values: np.ndarray, day: date) -> int:
        j = self._day_index(day)
        return int(values[j]) if 0 <= j < len(values) else 0

    def _fleet_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._offsets is None:
            self._offsets = np.array([self._day_index(d.activation_date) for d in self._devices], dtype=np.int64)
            self._models = np.array([d.model for d in self._devices])
        return self._offsets, self._models

    def _activations_of(self, model: str) -> np.ndarray:
        if model not in self._activations:
            offsets, models = self._fleet_arrays()
            self._activations[model] = np.bincount(offsets[models == model], minlength=self._n_days)[: self._n_days]
        return self._activations[model]

    def _consumption(self, product: Product) -> np.ndarray:
        if product.model is not None:
            return self._activations_of(product.model)
        rule = self._rules[product.product_id]
        offsets, models = self._fleet_arrays()
        shares = np.array([rule.share(str(m)) for m in models]) if len(models) else np.zeros(0)
        # per (accessory, device): the same install takes the same accessory in any world size
        u = rng.uniform(self.seed, "accessory-fit", rule.name, np.array([d.index for d in self._devices], dtype=np.int64))
        return np.bincount(offsets[u < shares], minlength=self._n_days)[: self._n_days]

    def _history(self, product_id: str) -> StockHistory:
        if product_id not in self._histories:
            self._histories[product_id] = self._walk(self.product(product_id))
        return self._histories[product_id]

    def _walk(self, product: Product) -> StockHistory:
        consumption = self._consumption(product)
        # every activation lies on or before the anchor's Sunday
        installing_days = self._day_index(self._anchor + timedelta(days=INSTALLING_DAYS_AFTER_ANCHOR))
        rate = float(consumption.sum()) / installing_days
        target = max(MIN_TARGET, math.ceil(rate * TARGET_COVER_DAYS))
        n = len(consumption)
        stock = np.zeros(n, dtype=np.int64)
        deliveries = np.zeros(n, dtype=np.int64)
        on_hand, ordered = target, 0
        first_weekday = self._first.weekday()
        for j, used in enumerate(consumption.tolist()):
            weekday = (first_weekday + j) % 7
            if weekday == ORDER_WEEKDAY:
                ordered = max(0, target - on_hand)   # yesterday's closing stock, before today's installs
            delivered = 0
            if weekday == DELIVERY_WEEKDAY:
                delivered, ordered = ordered, 0
            on_hand += delivered - used
            stock[j], deliveries[j] = on_hand, delivered
        return StockHistory(target, stock, consumption.astype(np.int64), deliveries)
