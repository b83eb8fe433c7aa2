"""Fake Telesto inventory API (`GET {base}/v2/products`) over the World's products and stock.

SPEC.md in this folder is the API the sandbox speaks. The modules: `protocol` (API key, paths,
error bodies), `synthesis` (World products as rows) and `app` (rate limit and block, the
products route, knobs, `make_server`).
"""

from fleet_pipeline.sandbox.telesto.app import TelestoApp, TelestoKnobs, make_server
from fleet_pipeline.sandbox.telesto.protocol import API_KEY, API_PREFIX, CREDENTIALS, PRODUCTS_PATH
from fleet_pipeline.sandbox.telesto.synthesis import price_of, sku_of

__all__ = [
    "API_KEY",
    "API_PREFIX",
    "CREDENTIALS",
    "PRODUCTS_PATH",
    "TelestoApp",
    "TelestoKnobs",
    "make_server",
    "price_of",
    "sku_of",
]
