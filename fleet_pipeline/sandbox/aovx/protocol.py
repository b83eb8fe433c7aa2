"""The AOVX (RuoYi) protocol: token, paths, errors, parameters, time stamps and the 404 body.

What both routes share (see SPEC.md): RuoYi's `{code, message|msg}` errors answered with HTTP
200, `yyyy-MM-dd HH:mm:ss` parameters, millisecond ISO and epoch stamps, Spring Boot's 404.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fleet_pipeline.sandbox.messages import Response

TOKEN = "sandbox-aovx-token"
CREDENTIALS: Mapping[str, str] = {"token": TOKEN}
API_PREFIX = "/prod"
OTA_REPORT_PATH = "/system/asset/command/queryTerminalOtaReport"
TERMINAL_LIST_PATH = "/system/asset/terminal/list"
OTA_REPORT = "queryTerminalOtaReport"
TERMINAL_LIST = "terminal/list"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 20
RETENTION_DAYS = 365
PLATFORM = "aovx"


class AovxError(Exception):
    def __init__(self, code: int, text: str, field_name: str = "message") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.field_name = field_name


# -- helpers -----------------------------------------------------------------------------------
def moment_param(body: Mapping[str, Any], name: str) -> datetime:
    value = body.get(name)
    if value is None or value == "":
        raise AovxError(500, f"{name} must not be empty")
    try:
        return datetime.strptime(str(value), TIME_FORMAT)
    except ValueError:
        raise AovxError(500, f"{name} must be yyyy-MM-dd HH:mm:ss, got {str(value)[:40]!r}") from None


def integer_param(values: Mapping[str, Any], name: str, default: int) -> int:
    value = values.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise AovxError(500, f"{name} must be an integer")
    try:
        return int(str(value))
    except ValueError:
        raise AovxError(500, f"{name} must be an integer, got {str(value)[:20]!r}") from None


def iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple()) * 1000 + moment.microsecond // 1000


def not_found(path: str, now: datetime) -> Response:
    """Spring Boot's JSON error body for an unmapped path."""
    return Response.json(
        {"timestamp": iso_ms(now).replace("Z", "+00:00"), "status": 404, "error": "Not Found", "path": path},
        404,
    )
