"""The Navixy wire protocol: credentials, error codes, parameters, date-times, answers.

What every call shares before it reaches an endpoint (see SPEC.md, "Transport" and "Date-times"):
the error table and its HTTP statuses, merging query and body parameters, typed parameter access
whose failures are code 7 naming the parameter, the user's local time and ISO mode, and the JSON
envelope with nulls omitted.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fleet_pipeline.sandbox.messages import Request, Response

API_KEY = "sandbox-navixy-api-key"
LOGIN = "fleet@fleetco.example"
PASSWORD = "sandbox-navixy-password"
USER_TIME_ZONE = "Europe/Paris"
API_PREFIX = "/api-v2"
CREDENTIALS: Mapping[str, str] = {"api_key": API_KEY, "login": LOGIN, "password": PASSWORD}


def account_api_key(account_id: str) -> str:
    """The API key of one Navixy account of the World: it sees the devices that account owns
    directly, so several keys are several accounts with their own fleets (API_KEY sees them all)."""
    return f"{API_KEY}.{account_id}"
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
ZONE = ZoneInfo(USER_TIME_ZONE)


# code -> (description, HTTP status); errors.md: "Default HTTP code is 400".
_ERRORS: dict[int, tuple[str, int]] = {
    3: ("Wrong hash", 400),
    4: ("User or API key not found or session ended", 400),
    5: ("Wrong request format", 400),
    7: ("Invalid parameters", 400),
    15: ("Too many requests (rate limit exceeded)", 429),
    102: ("Wrong login or password", 400),
    111: ("Wrong handler", 400),
    112: ("Wrong method", 400),
    201: ("Not found in database", 400),
    208: ("Device blocked", 403),
    211: ("Requested time span is too big", 400),
    212: ("Requested limit is too big", 400),
    217: ("List contains nonexistent entities", 400),
    221: ("Device limit exceeded", 403),
    276: ("Action is forbidden for received session type", 403),
}


class NavixyError(Exception):
    def __init__(self, code: int, errors: list[dict[str, str]] | None = None) -> None:
        description, status = _ERRORS[code]
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description
        self.status = status
        self.errors = errors


def invalid(parameter: str, error: str) -> NavixyError:
    return NavixyError(7, [{"parameter": parameter, "error": error}])


# -- request parsing -------------------------------------------------------------------------
def request_values(request: Request) -> dict[str, Any]:
    """Query-string parameters overlaid by the body's (JSON object or form)."""
    values: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    if not request.body.strip():
        return values
    if request.content_type == "application/x-www-form-urlencoded":
        pairs = request.form()
        if pairs is None:
            raise NavixyError(5)
        values.update(pairs)
        return values
    parsed = request.json()
    if not isinstance(parsed, dict):
        raise NavixyError(5)
    values.update(parsed)
    return values


def hash_of(request: Request, values: Mapping[str, Any]) -> str | None:
    header = request.header("Authorization")
    if header.startswith("NVX ") and header[4:].strip():
        return header[4:].strip()
    value = values.get("hash")
    return str(value) if value not in (None, "") else None


def iso_mode(request: Request, values: Mapping[str, Any]) -> bool:
    if request.header("NVX-ISO-DateTime").strip().lower() == "true":
        return True
    flag = values.get("iso_datetime")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


class Params:
    """Typed access to a call's parameters; every failure is code 7 naming the parameter."""

    def __init__(self, values: Mapping[str, Any], iso: bool) -> None:
        self.values = values
        self.iso = iso

    def _get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def string(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise invalid(name, "required parameter is missing")
        if not isinstance(value, str):
            raise invalid(name, "must be a string")
        return value

    def integer(self, name: str, *, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None, required: bool = True) -> int | None:
        value = self._get(name)
        if value is None:
            if default is None and required:
                raise invalid(name, "required parameter is missing")
            return default
        number = _as_int(value)
        if number is None:
            raise invalid(name, "must be an integer")
        if minimum is not None and number < minimum:
            raise invalid(name, f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise invalid(name, f"must be at most {maximum}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise invalid(name, "must be true or false")

    def _array(self, name: str) -> list[Any] | None:
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text) if text.startswith("[") else text.split(",")
            except ValueError:
                raise invalid(name, "must be an array") from None
        if not isinstance(value, list):
            raise invalid(name, "must be an array")
        return value

    def int_array(self, name: str, *, max_size: int | None = None) -> list[int]:
        items = self._array(name)
        if items is None:
            raise invalid(name, "required parameter is missing")
        if not items:
            raise invalid(name, "must not be empty")
        if max_size is not None and len(items) > max_size:
            raise invalid(name, f"size must be between 1 and {max_size}")
        numbers = [_as_int(item) for item in items]
        if any(n is None for n in numbers):
            raise invalid(name, "must be an array of integers")
        return list(dict.fromkeys(n for n in numbers if n is not None))

    def str_array(self, name: str) -> list[str] | None:
        items = self._array(name)
        if items is None:
            return None
        if not all(isinstance(item, str) for item in items):
            raise invalid(name, "must be an array of strings")
        return [item.strip() for item in items]

    def moment(self, name: str) -> datetime:
        """A date/time parameter as naive UTC (local or ISO, by the call's mode)."""
        text = self.string(name).strip()
        if self.iso:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise invalid(name, "must be ISO 8601 with an offset, e.g. "
                                     "2026-10-25T02:30:00+01:00 (ISO mode is on)")
            return parsed.astimezone(timezone.utc).replace(tzinfo=None)
        try:
            local = datetime.strptime(text, LOCAL_FORMAT)
        except ValueError:
            raise invalid(name, "must be 'yyyy-MM-dd HH:mm:ss' in the user's time zone") from None
        return local_to_utc(local)

    def window(self) -> tuple[datetime, datetime]:
        start, end = self.moment("from"), self.moment("to")
        if end <= start:
            raise invalid("to", "must be after 'from'")
        return start, end


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


@dataclass(frozen=True)
class Call:
    method: str
    params: Params
    iso: bool
    hash: str | None = None
    session_kind: str | None = None     # "api_key" | "session"
    # The World account an account API key reaches (its devices alone); None: the whole fleet.
    account_id: str | None = None


# -- responses -------------------------------------------------------------------------------
def error_response(method: str | None, exc: NavixyError) -> Response:
    payload: dict[str, Any] = {"success": False,
                               "status": {"code": exc.code, "description": exc.description}}
    if exc.errors:
        payload["errors"] = exc.errors
    return Response.json(payload, exc.status, vendor_method=method, vendor_code=exc.code)


def drop_nulls(value: Any) -> Any:
    """Navixy omits null fields to keep answers small; so does the sandbox, at every depth."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


# -- time ------------------------------------------------------------------------------------
def epoch(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())


def utc_to_local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc).astimezone(ZONE)


def local_to_utc(local: datetime) -> datetime:
    """A naive local wall time to naive UTC; fold=0 (the first occurrence), as java.time does."""
    return local.replace(tzinfo=ZONE, fold=0).astimezone(timezone.utc).replace(tzinfo=None)


def wall_clock_span(start: datetime, end: datetime) -> timedelta:
    """The window's length on the user's wall clock.

    Limits are ISO periods (P31D) added to a zoned date-time, as java.time does, so a local
    month containing the 25-hour day still fits in 31 days.
    """
    return (utc_to_local(end).replace(tzinfo=None)
            - utc_to_local(start).replace(tzinfo=None))


def utc_days(start: datetime, end: datetime) -> list[date]:
    """UTC days touched by (start, end]."""
    first, last = start.date(), end.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def fmt(moment: datetime | None, iso: bool) -> str | None:
    """A naive-UTC instant as the user's local time: ISO with its offset, or yyyy-MM-dd HH:mm:ss."""
    if moment is None:
        return None
    local = utc_to_local(moment)
    return local.isoformat(timespec="seconds") if iso else local.strftime(LOCAL_FORMAT)
