"""What a fake vendor server exchanges: the parsed `Request`, the `Response`, and the `VendorApp`
contract every vendor's protocol implements (the shared `SandboxServer` serves any of them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl


@dataclass
class Request:
    """One HTTP request as the vendor app sees it; parsed views are computed once on demand."""

    http_method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    # The peer's address: vendors that limit per client IP (Navixy) key their windows on it.
    client_ip: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def header(self, name: str, default: str = "") -> str:
        """A header by case-insensitive name (clients spell `authorization` in any case)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    def form(self) -> list[tuple[str, str]] | None:
        """The body as form pairs (order and duplicates kept), or None if it is not a form."""
        if "form" not in self._cache:
            pairs: list[tuple[str, str]] | None = None
            if self.content_type == "application/x-www-form-urlencoded":
                try:
                    pairs = parse_qsl(self.body.decode("utf-8"), keep_blank_values=True,
                                      strict_parsing=False, errors="strict")
                except UnicodeDecodeError:
                    pairs = None
            self._cache["form"] = pairs
        return self._cache["form"]

    def json(self) -> Any:
        """The body parsed as JSON, or None if it is empty or not JSON."""
        if "json" not in self._cache:
            try:
                self._cache["json"] = json.loads(self.body) if self.body else None
            except (ValueError, UnicodeDecodeError):
                self._cache["json"] = None
        return self._cache["json"]


@dataclass
class Response:
    """What a vendor app answers; `vendor_method`/`vendor_code` only feed the request log."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    vendor_method: str | None = None
    vendor_code: str | None = None

    @classmethod
    def json(cls, payload: Any, status: int = 200, *, vendor_method: str | None = None,
             vendor_code: str | int | None = None,
             headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status=status, body=body, headers=dict(headers or {}),
                   vendor_method=vendor_method,
                   vendor_code=None if vendor_code is None else str(vendor_code))

    @classmethod
    def html(cls, status: int, title: str, detail: str, *,
             vendor_method: str | None = None) -> Response:
        return cls(status=status, body=html_error_page(status, title, detail),
                   content_type="text/html;charset=UTF-8", vendor_method=vendor_method)


def html_error_page(status: int, title: str, detail: str) -> bytes:
    """A Java-style error page: what real gateways return where a client expects JSON."""
    from html import escape

    return (
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status "
        f"{status} - {escape(title)}</title></head><body><h1>HTTP Status {status} - "
        f"{escape(title)}</h1><hr/><p><b>Description</b> {escape(detail)}</p><hr/>"
        "<h3>Apache Tomcat</h3></body></html>"
    ).encode()


class VendorApp(Protocol):
    """A vendor's protocol, independent of HTTP plumbing and faults."""

    vendor: str

    def vendor_method(self, request: Request) -> str | None:
        """The vendor's API method this request names (for the log), if it can tell."""

    def throttle(self, request: Request) -> Response | None:
        """The vendor's own rate-limit answer for this request, or None to let it through."""

    def handle(self, request: Request) -> Response:
        """Answer a request that passed the fault and throttle stages."""

