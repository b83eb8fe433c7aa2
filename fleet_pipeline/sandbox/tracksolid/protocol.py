"""The Jimi open-API protocol: credentials, limits, signing, tokens, parameters, answers.

What every call shares before it reaches an endpoint (see SPEC.md): the MD5 signature over the
sorted parameters, stateless HMAC-signed tokens, parameter and time parsing whose failures are
Jimi error codes, and the answer envelope.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.messages import Response

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device


APP_KEY = "sandbox-app-key"
APP_SECRET = "sandbox-app-secret"
USER_ID = "fleetco"
USER_PASSWORD = "sandbox-password"
ROUTE_PATH = "/route/rest"
CREDENTIALS: Mapping[str, str] = {
    "app_key": APP_KEY,
    "app_secret": APP_SECRET,
    "user_id": USER_ID,
    "user_password": USER_PASSWORD,
}

PLATFORM = "tracksolid"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MAX_TOKEN_LIFETIME_S = 7200
REFRESH_LIFETIME = timedelta(hours=24)
MAX_IMEIS = 50
MAX_PAGE_ROWS = 100
ALARM_ROWS_REACHABLE = 1000
ALARM_MAX_WINDOW = timedelta(days=31)
TRACK_MAX_WINDOW = timedelta(days=7)
TRACK_HISTORY_MONTHS = 3
LAST_FIX_LOOKBACK = timedelta(days=7)
COMMON_PARAMS = ("method", "app_key", "timestamp", "sign_method", "sign", "v", "format")

TOKEN_GET = "jimi.oauth.token.get"
TOKEN_REFRESH = "jimi.oauth.token.refresh"
ALARM_LIST = "jimi.device.alarm.list"


class JimiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Token:
    account: str
    app_key: str
    kind: str          # "a" access | "r" refresh
    session: str       # shared by an access/refresh pair
    issued_at: datetime
    expires_at: datetime


class TokenCodec:
    """Signs and verifies stateless tokens with a key derived from the app secret."""

    def __init__(self, app_secret: str) -> None:
        self._key = hmac.new(app_secret.encode("utf-8"), b"tracksolid-sandbox-token-v1",
                             hashlib.sha256).digest()

    def encode(self, token: Token) -> str:
        payload = json.dumps({"a": token.account, "k": token.app_key, "t": token.kind,
                              "s": token.session, "i": epoch(token.issued_at),
                              "e": epoch(token.expires_at)},
                             separators=(",", ":"), sort_keys=True).encode("utf-8")
        body = b64(payload)
        return f"{body}.{b64(self._mac(body))}"

    def decode(self, text: str) -> Token | None:
        body, _, mac = text.partition(".")
        if not body or not mac or not hmac.compare_digest(mac, b64(self._mac(body))):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return Token(account=str(data["a"]), app_key=str(data["k"]), kind=str(data["t"]),
                          session=str(data["s"]), issued_at=from_epoch(int(data["i"])),
                          expires_at=from_epoch(int(data["e"])))
        except (ValueError, KeyError, TypeError):
            return None

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True)
class Call:
    """A verified request: its parameters, the method and (after auth) the caller's account."""

    method: str
    params: dict[str, str]
    app_key: str
    account: str | None = None


# -- protocol helpers ------------------------------------------------------------------------
def sign(params: Mapping[str, str], secret: str) -> str:
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign")
    return hashlib.md5(f"{secret}{text}{secret}".encode()).hexdigest().upper()


def ok_answer(result: Any) -> dict[str, Any]:
    return {"code": 0, "message": "success", "result": result}


def error(method: str | None, code: int, message: str) -> Response:
    if method == ALARM_LIST:
        payload: dict[str, Any] = {"code": str(code), "msg": message, "result": None}
    else:
        payload = {"code": code, "message": message, "result": None}
    return Response.json(payload, vendor_method=method, vendor_code=code)


def parse_time(params: Mapping[str, str], name: str) -> datetime:
    try:
        return datetime.strptime(params[name].strip(), TIME_FORMAT)
    except ValueError:
        raise JimiError(1001, f"{name} must be UTC 'yyyy-MM-dd HH:mm:ss'") from None


def window(params: Mapping[str, str], begin_name: str, end_name: str) -> tuple[datetime, datetime]:
    begin, end = parse_time(params, begin_name), parse_time(params, end_name)
    if begin > end:
        raise JimiError(1001, f"{begin_name} must not be later than {end_name}")
    return begin, end


def int_param(params: Mapping[str, str], name: str, *, default: int | None = None,
               minimum: int | None = None, maximum: int | None = None) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        if default is None:
            raise JimiError(1001, f"missing required parameter: {name}")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise JimiError(1001, f"{name} must be an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise JimiError(1001, f"{name} out of range")
    return value


def expires_in(params: Mapping[str, str]) -> int:
    return min(int_param(params, "expires_in", minimum=1), MAX_TOKEN_LIFETIME_S)


def days(begin: datetime, end: datetime, inclusive: bool = False) -> list[date]:
    """UTC days touched by [begin, end) -- or [begin, end] when inclusive."""
    last = end if inclusive else end - timedelta(microseconds=1)
    if last < begin:
        return []
    return [begin.date() + timedelta(days=n) for n in range((last.date() - begin.date()).days + 1)]


def months_before(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def fmt(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def iso_z(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def epoch(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())


def from_epoch(seconds: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def odometer(km: float) -> str:
    # Jimi prints the float's full binary expansion ("12345.6481649691599485").
    return f"{km:.16f}"


def distance(value: float, per_km: float) -> str:
    return str(round(value)) if per_km != 1.0 else str(round(value, 3))


def expiration(d: Device) -> str:
    return f"{d.expiration_date:%Y-%m-%d} 23:59:59"


def activation(d: Device) -> str:
    # The World knows the activation day only; a stable time of day looks like the real field.
    moment = datetime.combine(d.activation_date, datetime.min.time()) + timedelta(
        seconds=int(d.imei[-5:]) % 86400)
    return fmt(moment)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
