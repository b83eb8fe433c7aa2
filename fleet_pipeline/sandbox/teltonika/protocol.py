"""The FOTA WEB API protocol: token, User-Agent rule, errors, query parsing, paging, answers.

What every route shares (see SPEC.md): the bearer token, the rule that a User-Agent must name an
application and its version, Laravel-style error messages, `name[]` array parameters, sorting with
nulls first, and the paginated envelope with its page URLs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fleet_pipeline.sandbox.messages import Request, Response

API_TOKEN = "sandbox-teltonika-token"
CREDENTIALS: Mapping[str, str] = {"token": API_TOKEN}


DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


DEVICE_SORTS = ("imei", "description", "model", "current_firmware", "current_configuration",
                "serial", "company_name", "group_name", "seen_at", "created_at", "updated_at")
GROUP_SORTS = ("id", "name", "company_name", "firmware_name", "configuration_name", "created_at")
TASK_SORTS = ("id", "device_imei", "type", "company_name", "created_at", "created_by", "status_changed_at")
BATCH_SORTS = ("id", "created_at")


# Agents of HTTP libraries and tools: they name no company and no application.
_GENERIC_AGENTS = re.compile(
    r"^(python-requests|python-urllib|python-httpx|aiohttp|httpx|curl|wget|go-http-client|"
    r"java|okhttp|apache-httpclient|axios|node-fetch|node|undici|got|libwww-perl|guzzlehttp|"
    r"ruby|faraday|dart|postmanruntime|insomnia|mozilla|httpie|restsharp|unirest)\d*(?=[/\s;(]|$)",
    re.IGNORECASE,
)
_PRODUCT_VERSION = re.compile(r"[A-Za-z][\w.\-]*/v?\d")


def is_acceptable_user_agent(agent: str) -> bool:
    """True for an agent naming an application and its version, not a bare HTTP library."""
    agent = agent.strip()
    return bool(agent) and not _GENERIC_AGENTS.match(agent) and bool(_PRODUCT_VERSION.search(agent))


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def invalid(detail: str) -> ApiError:
    return ApiError(400, f"The given data was invalid. {detail}")


# -- query parsing ------------------------------------------------------------------------------
_ARRAY_KEY = re.compile(r"^(?P<name>[A-Za-z_]+)\[\d*\]$")


class Query:
    """The query string; arrays may come as `a=1&a=2`, `a[]=1`, `a[0]=1` or `a=1,2`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in pairs:
            match = _ARRAY_KEY.match(name)
            self.values.setdefault(match.group("name") if match else name, []).append(value)

    def items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, values in self.values.items() for v in values]

    def strings(self, name: str) -> list[str] | None:
        if name not in self.values:
            return None
        return [part.strip() for v in self.values[name] for part in v.split(",") if part.strip()]

    def ints(self, name: str) -> list[int] | None:
        values = self.strings(name)
        if values is None:
            return None
        try:
            return [int(v) for v in values]
        except ValueError:
            raise invalid(f"{name} must be an array of integers.") from None

    def string(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[-1] if values else None

    def integer(self, name: str, default: int) -> int:
        value = self.string(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise invalid(f"{name} must be an integer.") from None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name)
        if value is None or value == "":
            return default
        if value not in allowed:
            raise invalid(f"{name} must be one of: {', '.join(allowed)}.")
        return value

    def paging(self) -> tuple[int, int]:
        page = self.integer("page", 1)
        per_page = self.integer("per_page", DEFAULT_PER_PAGE)
        if page < 1:
            raise invalid("page must be at least 1.")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise invalid(f"per_page must be between 1 and {MAX_PER_PAGE}.")
        return page, per_page


def parse_query(query: str) -> Query:
    return Query(parse_qsl(query, keep_blank_values=True))


def path_int(key: str | None, name: str) -> int:
    try:
        return int(key or "")
    except ValueError:
        raise invalid(f"{name} must be an integer.") from None


# -- responses ----------------------------------------------------------------------------------
def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.header("Authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def message_answer(status: int, message: str, method: str | None,
             headers: dict[str, str] | None = None) -> Response:
    return Response.json({"message": message}, status, vendor_method=method,
                         vendor_code=status if status >= 400 else None, headers=headers)


def paged(request: Request, query: Query, rows: list[dict[str, Any]], total: int, page: int,
           per_page: int) -> dict[str, Any]:
    last_page = max(1, math.ceil(total / per_page))
    host = request.header("Host") or "127.0.0.1"
    kept = [(k, v) for k, v in query.items() if k != "page"]

    def url(n: int) -> str:
        return f"http://{host}{request.path}?" + urlencode([*kept, ("page", str(n))])

    first = (page - 1) * per_page + 1
    return {
        "current_page": page,
        "from": first if rows else 0,
        "to": first + len(rows) - 1 if rows else 0,
        "total": total,
        "first_page": 1,
        "last_page": last_page,
        "per_page": per_page,
        "data": rows,
        "first_page_url": url(1),
        "next_page_url": url(page + 1) if page < last_page else None,
        "prev_page_url": url(page - 1) if page > 1 else None,
        "last_page_url": url(last_page),
    }


def nulls_first_sorted(items: list[Any], value: Callable[[Any], Any], descending: bool) -> list[Any]:
    """Nulls first when ascending (last when descending), like an SQL ORDER BY on MySQL."""
    def key(item: Any) -> tuple[bool, Any]:
        found = value(item)
        return (found is not None, 0 if found is None else found)

    return sorted(items, key=key, reverse=descending)


def fmt(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, datetime.min.time())
    return moment.strftime(TIME_FORMAT)
