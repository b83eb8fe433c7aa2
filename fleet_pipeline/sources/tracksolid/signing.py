"""The exact strings a Tracksolid request sends, and the MD5 signature over them."""

from __future__ import annotations

import hashlib
from datetime import datetime

from fleet_pipeline.sources.time_windows import as_naive_utc

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_time(value: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC; aware datetimes are converted, naive ones are UTC already."""
    return as_naive_utc(value).strftime(TIME_FORMAT)


def as_param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def sign(params: dict[str, str], app_secret: str) -> str:
    """The Jimi signature: MD5 of ``secret + k1 + v1 + k2 + v2 ... + secret`` over sorted keys.

    ``params`` must already hold the exact strings that will be sent; stringifying twice (e.g.
    ``1.0`` vs ``"1"``) is what makes a real server answer 1001.
    """
    parts = [app_secret]
    for key in sorted(params):
        if key == "sign" or params[key] is None:
            continue
        parts.append(key)
        parts.append(params[key])
    parts.append(app_secret)
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest().upper()
