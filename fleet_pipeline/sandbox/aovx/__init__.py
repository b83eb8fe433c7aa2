"""Fake AOVX cloud (`https://cloud.aovx.com/prod` style) serving the World's OTA attempts.

SPEC.md in this folder is the API the sandbox speaks. The modules: `protocol` (token, paths,
errors, parameters, time stamps), `synthesis` (an OTA attempt as a report row), `endpoints` (the
OTA report and the terminal list) and `app` (token check, dispatch, knobs, `make_server`).
"""

from fleet_pipeline.sandbox.aovx.app import AovxApp, AovxKnobs, make_server
from fleet_pipeline.sandbox.aovx.protocol import (
    API_PREFIX,
    CREDENTIALS,
    OTA_REPORT,
    OTA_REPORT_PATH,
    RETENTION_DAYS,
    TERMINAL_LIST,
    TERMINAL_LIST_PATH,
    TOKEN,
)
from fleet_pipeline.sandbox.aovx.synthesis import ota_row

__all__ = [
    "API_PREFIX",
    "CREDENTIALS",
    "OTA_REPORT",
    "OTA_REPORT_PATH",
    "RETENTION_DAYS",
    "TERMINAL_LIST",
    "TERMINAL_LIST_PATH",
    "TOKEN",
    "AovxApp",
    "AovxKnobs",
    "make_server",
    "ota_row",
]
