"""Reading environment variables: the one error type and the value parsers every setting uses.

``fleet_pipeline.settings`` (the general settings) and each vendor's ``sources/<vendor>/settings.py``
build on these; the module imports nothing of the project, so reading settings stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """Missing, partial or malformed configuration, reported before any run starts."""


def report_config_errors_briefly() -> None:
    """Let a ConfigError that ends the process print as its message alone, first and whole.

    The definitions check every setting when they load, so under `dagster asset materialize` (or
    `dagster job execute`) a bad variable ends the process from inside Dagster's import machinery:
    Python would print some thirty frames of it before the one line that matters. Those frames say
    nothing about a setting the user typed. Any other uncaught error keeps its full traceback, and a
    code server (the UI, the daemon) never reaches this hook: it shows the message as the load error.
    """
    previous = sys.excepthook
    if getattr(previous, "reports_config_errors", False):
        return

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            previous(kind, error, trace)
        else:
            print(f"fleet_pipeline: configuration error: {cause}", file=sys.stderr)

    hook.reports_config_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value with surrounding blanks removed; None when unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def whole_number(env: Mapping[str, str], name: str, default: int, what: str = "a whole number") -> int:
    raw = env_value(env, name)
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from exc


def days_between(env: Mapping[str, str], name: str, default: int, least: int, most: int) -> int:
    """A whole number of days from ``name``, ``default`` when unset, refused outside least..most."""
    days = whole_number(env, name, default, "a whole number of days")
    if not least <= days <= most:
        raise ConfigError(f"{name} must be between {least} and {most}, got {days}")
    return days


def checked_url(name: str, url: str) -> str:
    """``url`` when it can be requested: http(s), a host, a valid port, no spaces."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must start with http:// or https://, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc}), got {url!r}") from None
    if not parts.hostname or any(c.isspace() for c in url) or (port is not None and not 0 < port < 65536):
        raise ConfigError(f"{name} is not a valid URL (host and port), got {url!r}")
    return url


def base_url(env: Mapping[str, str], name: str, default: str) -> str:
    return checked_url(name, (env_value(env, name) or default).rstrip("/"))


def token_only(env: Mapping[str, str], token_var: str, url_var: str, default_url: str) -> tuple[str, str] | None:
    """(base_url, token) for a vendor configured by one token, or None when the token is unset."""
    token = env_value(env, token_var)
    if token is None:
        if env_value(env, url_var):
            raise ConfigError(f"{url_var} is set but {token_var} is not (or unset {url_var} to use the sandbox)")
        return None
    return base_url(env, url_var, default_url), token
