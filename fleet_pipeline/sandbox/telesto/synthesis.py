"""World truth as Telesto rows: products with their price, SKU and stock on hand, strings only."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from fleet_pipeline.sandbox.telesto.protocol import TIME_FORMAT

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Product


CATEGORY_TRACKERS = "Traceurs GPS"
CATEGORY_ACCESSORIES = "Accessoires"
# About one accessory in four has no SKU in the back office (served as "").
MISSING_SKU_SHARE = 0.25


def _digest(*parts: object) -> int:
    """A stable 64-bit number from the parts (never Python's salted hash)."""
    text = ":".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def price_of(product: Product) -> str:
    """List price in euros, two decimals: a tracker 59-249 EUR, an accessory 4-39 EUR."""
    low, high = (59, 249) if product.model else (4, 39)
    cents = _digest("price", product.product_id) % ((high - low) * 100)
    whole = low + cents // 100
    return f"{whole}.{(cents % 100) // 10 * 10:02d}"


def sku_of(product: Product) -> str:
    """The back-office SKU: TRK-<model> for trackers, ACC-<4 hex> for accessories, "" for some."""
    if product.model:
        return "TRK-" + "".join(ch for ch in product.model.upper() if ch.isalnum())
    if (_digest("sku-missing", product.product_id) % 1000) / 1000 < MISSING_SKU_SHARE:
        return ""
    return f"ACC-{_digest('sku', product.product_id) % 0x10000:04X}"


def _text(value: object) -> str:
    """The vendor's encoding of any value: None -> "", everything else its string."""
    return "" if value is None else str(value)


def product_row(product: Product, stock: int | None) -> dict[str, str]:
    """One product as the vendor sends it: strings only, stock at the end of the day."""
    return {
        "id": product.product_id,
        "name": product.name,
        "sku": sku_of(product),
        "ean_upc": _text(product.ean_upc),
        "category": CATEGORY_TRACKERS if product.model else CATEGORY_ACCESSORIES,
        "price": price_of(product),
        "stock_onhand": _text(stock),
        "description": "",
        "created": product.created.strftime(TIME_FORMAT),
    }
