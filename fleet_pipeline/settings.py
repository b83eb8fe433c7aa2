"""Configuration read from environment variables — the one place that knows their names.

Every variable is listed in the README's configuration table. Secrets are only ever read here and
handed to clients; nothing in this module prints them.

The pipeline runs in one of two modes:

* **sandbox** — no vendor credentials at all: every source talks to the embedded sandbox and the
  warehouse is ``data/sandbox.duckdb``, so synthetic rows can never mix with real ones;
* **live** — at least one vendor has credentials: those vendors talk to their real APIs and the
  warehouse is ``data/fleet.duckdb``.

Partial credentials for a vendor are a configuration error raised before any work starts.
:func:`check_configuration` reads every setting at once — when the definitions load and in
``fleet-pipeline config`` — and reports every bad variable, one message each, so that a typo never
waits for the schedule tick that first reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

TRACKSOLID_EU_NODE = "https://eu-open.tracksolidpro.com/route/rest"
TRACKSOLID_CREDENTIAL_VARS = (
    "TRACKSOLID_APP_KEY",
    "TRACKSOLID_APP_SECRET",
    "TRACKSOLID_USER_ID",
    "TRACKSOLID_USER_PASSWORD",
)
NAVIXY_EU_API = "https://api.eu.navixy.com/v2"
NAVIXY_CREDENTIAL_VARS = ("NAVIXY_API_KEY", "NAVIXY_LOGIN", "NAVIXY_PASSWORD")
TELTONIKA_FOTA_API = "https://api.teltonika.lt"
AOVX_US_SERVER = "https://cloud.aovx.com/prod"
TELESTO_API = "https://telesto.app"
MILEAGE_UNITS = ("km", "m")

# Tracksolid keeps track points for three months (track.list: "within the last 3 months"); older
# partitions could never be loaded, so by default the partition set is that window, counted back
# from today (UTC), rather than a fixed day that leaves the UI listing months that cannot be filled.
DEFAULT_PARTITIONS_DAYS = 90


class ConfigError(ValueError):
    """Missing, partial or malformed configuration, reported before any run starts."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _whole_number(env: Mapping[str, str], name: str, default: int, what: str = "a whole number") -> int:
    raw = _get(env, name)
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from exc


@dataclass(frozen=True, repr=False)
class TracksolidSettings:
    """Credentials and options for the real Tracksolid Pro API (``None`` fields never happen here)."""

    base_url: str
    app_key: str
    app_secret: str
    user_id: str
    user_password: str
    target_account: str
    mileage_unit: str

    def __repr__(self) -> str:  # secrets must not leak through logs or tracebacks
        return (
            f"TracksolidSettings(base_url={self.base_url!r}, app_key={self.app_key!r}, "
            f"user_id={self.user_id!r}, target_account={self.target_account!r}, "
            f"mileage_unit={self.mileage_unit!r}, app_secret=***, user_password=***)"
        )


def tracksolid_mileage_unit(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    unit = (_get(env, "TRACKSOLID_MILEAGE_UNIT") or "km").lower()
    if unit not in MILEAGE_UNITS:
        raise ConfigError(
            f"TRACKSOLID_MILEAGE_UNIT must be one of {', '.join(MILEAGE_UNITS)}, got {unit!r}"
        )
    return unit


def tracksolid_settings(env: Mapping[str, str] | None = None) -> TracksolidSettings | None:
    """The live Tracksolid configuration, or ``None`` when the embedded sandbox should be used."""
    env = os.environ if env is None else env
    present = {name: _get(env, name) for name in TRACKSOLID_CREDENTIAL_VARS}
    missing = [name for name, value in present.items() if value is None]
    unit = tracksolid_mileage_unit(env)
    if len(missing) == len(present):
        if _get(env, "TRACKSOLID_BASE_URL"):
            raise ConfigError(
                "TRACKSOLID_BASE_URL is set but no Tracksolid credentials are: set "
                + ", ".join(TRACKSOLID_CREDENTIAL_VARS)
                + " (or unset TRACKSOLID_BASE_URL to use the embedded sandbox)"
            )
        return None
    if missing:
        raise ConfigError(
            "Tracksolid configuration is partial: missing " + ", ".join(missing)
            + ". Set all of " + ", ".join(TRACKSOLID_CREDENTIAL_VARS)
            + " for the live API, or none of them for the embedded sandbox."
        )
    base_url = checked_url("TRACKSOLID_BASE_URL", _get(env, "TRACKSOLID_BASE_URL") or TRACKSOLID_EU_NODE)
    user_id = present["TRACKSOLID_USER_ID"]
    return TracksolidSettings(
        base_url=base_url,
        app_key=present["TRACKSOLID_APP_KEY"],
        app_secret=present["TRACKSOLID_APP_SECRET"],
        user_id=user_id,
        user_password=present["TRACKSOLID_USER_PASSWORD"],
        target_account=_get(env, "TRACKSOLID_TARGET_ACCOUNT") or user_id,
        mileage_unit=unit,
    )


@dataclass(frozen=True, repr=False)
class NavixySettings:
    """The real Navixy API: an API key (never expires), or a login whose session hash can end."""

    base_url: str
    api_key: str | None
    login: str | None
    password: str | None

    def __repr__(self) -> str:
        how = "api key" if self.api_key else f"login {self.login!r}"
        return f"NavixySettings(base_url={self.base_url!r}, auth={how}, secrets=***)"


def navixy_settings(env: Mapping[str, str] | None = None) -> NavixySettings | None:
    """The live Navixy configuration, or ``None`` when no Navixy credential is set."""
    env = os.environ if env is None else env
    api_key, login, password = (_get(env, name) for name in NAVIXY_CREDENTIAL_VARS)
    base_url = _get(env, "NAVIXY_BASE_URL")
    if not (api_key or login or password):
        if base_url:
            raise ConfigError(
                "NAVIXY_BASE_URL is set but no Navixy credentials are: set NAVIXY_API_KEY, or "
                "NAVIXY_LOGIN and NAVIXY_PASSWORD (or unset NAVIXY_BASE_URL to use the embedded sandbox)"
            )
        return None
    if not api_key and not (login and password):
        missing = "NAVIXY_PASSWORD" if login else "NAVIXY_LOGIN"
        raise ConfigError(
            f"Navixy configuration is partial: missing {missing}. Set NAVIXY_API_KEY, or both "
            "NAVIXY_LOGIN and NAVIXY_PASSWORD."
        )
    base_url = checked_url("NAVIXY_BASE_URL", base_url or NAVIXY_EU_API)
    # An API key never expires, so it wins over a login when both are given.
    return NavixySettings(base_url=base_url.rstrip("/"), api_key=api_key,
                          login=None if api_key else login, password=None if api_key else password)


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    return checked_url(name, (_get(env, name) or default).rstrip("/"))


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


def _token_only(env: Mapping[str, str], token_var: str, url_var: str, default_url: str) -> tuple[str, str] | None:
    """(base_url, token) for a vendor configured by one token, or None when the token is unset."""
    token = _get(env, token_var)
    if token is None:
        if _get(env, url_var):
            raise ConfigError(f"{url_var} is set but {token_var} is not (or unset {url_var} to use the sandbox)")
        return None
    return _base_url(env, url_var, default_url), token


@dataclass(frozen=True, repr=False)
class TeltonikaSettings:
    base_url: str
    token: str
    user_agent: str | None

    def __repr__(self) -> str:
        return f"TeltonikaSettings(base_url={self.base_url!r}, user_agent={self.user_agent!r}, token=***)"


def teltonika_settings(env: Mapping[str, str] | None = None) -> TeltonikaSettings | None:
    env = os.environ if env is None else env
    found = _token_only(env, "TELTONIKA_FOTA_API_TOKEN", "TELTONIKA_FOTA_BASE_URL", TELTONIKA_FOTA_API)
    if found is None:
        return None
    return TeltonikaSettings(base_url=found[0], token=found[1], user_agent=_get(env, "TELTONIKA_FOTA_USER_AGENT"))


@dataclass(frozen=True, repr=False)
class AovxSettings:
    base_url: str
    token: str
    terminal_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return f"AovxSettings(base_url={self.base_url!r}, terminals={len(self.terminal_ids)}, token=***)"


def aovx_terminal_ids(env: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """AOVX_TERMINAL_IDS (comma or whitespace separated) or the file AOVX_TERMINAL_IDS_FILE names
    (one id per line, # comments); None when neither is set."""
    env = os.environ if env is None else env
    inline, path = _get(env, "AOVX_TERMINAL_IDS"), _get(env, "AOVX_TERMINAL_IDS_FILE")
    if inline and path:
        raise ConfigError("set AOVX_TERMINAL_IDS or AOVX_TERMINAL_IDS_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"AOVX_TERMINAL_IDS_FILE {path!r} cannot be read: {exc.strerror}") from exc
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    elif inline:
        text = inline
    else:
        return None
    ids = tuple(dict.fromkeys(part for part in text.replace(",", " ").split() if part))
    if not ids:
        raise ConfigError("the AOVX terminal id list is empty")
    return ids


def aovx_settings(env: Mapping[str, str] | None = None) -> AovxSettings | None:
    env = os.environ if env is None else env
    found = _token_only(env, "AOVX_TOKEN", "AOVX_BASE_URL", AOVX_US_SERVER)
    if found is None:
        return None
    ids = aovx_terminal_ids(env)
    if ids is None:
        raise ConfigError(
            "AOVX_TOKEN is set but no terminal ids are: the AOVX API cannot list terminals, so name "
            "them in AOVX_TERMINAL_IDS (comma separated) or in a file named by AOVX_TERMINAL_IDS_FILE"
        )
    return AovxSettings(base_url=found[0], token=found[1], terminal_ids=ids)


@dataclass(frozen=True, repr=False)
class TelestoSettings:
    base_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"TelestoSettings(base_url={self.base_url!r}, api_key=***)"


def telesto_settings(env: Mapping[str, str] | None = None) -> TelestoSettings | None:
    env = os.environ if env is None else env
    found = _token_only(env, "TELESTO_API_KEY", "TELESTO_BASE_URL", TELESTO_API)
    return None if found is None else TelestoSettings(base_url=found[0], api_key=found[1])


# Vendor -> reader of its live configuration (None when it has no credentials).
VENDOR_SETTINGS = {
    "tracksolid": tracksolid_settings,
    "navixy": navixy_settings,
    "teltonika": teltonika_settings,
    "aovx": aovx_settings,
    "telesto": telesto_settings,
}


def configured_vendors(env: Mapping[str, str] | None = None) -> list[str]:
    """Vendors with live credentials (validated: partial configuration raises ConfigError)."""
    return [vendor for vendor, read in VENDOR_SETTINGS.items() if read(env) is not None]


def is_sandbox_mode(env: Mapping[str, str] | None = None) -> bool:
    """True when no vendor has credentials: the whole pipeline then runs on the embedded sandbox.

    With credentials for some vendors only, the others are not configured: their assets fail with
    a clear message instead of quietly loading synthetic rows into a live warehouse.
    """
    return not configured_vendors(env)


def project_root() -> Path:
    """The checkout this package was installed from (editable install), else the working directory."""
    candidate = Path(__file__).resolve().parents[1]
    if (candidate / "pyproject.toml").exists() and (candidate / "workspace.yaml").exists():
        return candidate
    return Path.cwd()


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = _get(env, "FLEET_DATA_DIR")
    return Path(configured).resolve() if configured else project_root() / "data"


def duckdb_path(env: Mapping[str, str] | None = None) -> Path:
    """The working warehouse file: explicit, else a sandbox or a live file so the two never mix."""
    env = os.environ if env is None else env
    configured = _get(env, "FLEET_DUCKDB_PATH")
    if configured:
        return Path(configured).resolve()
    name = "sandbox.duckdb" if is_sandbox_mode(env) else "fleet.duckdb"
    return data_dir(env) / name


def serving_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where BI tools read: the published DuckDB copy and the Parquet export of the marts."""
    env = os.environ if env is None else env
    configured = _get(env, "FLEET_SERVING_DIR")
    return Path(configured).resolve() if configured else data_dir(env) / "serving"


def reports_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the rendered HTML report goes."""
    return data_dir(env) / "reports"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where clients keep state shared across processes and runs (tokens, rate-limit ledgers)."""
    return data_dir(env) / "cache"


def dagster_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = _get(env, "DAGSTER_HOME")
    return Path(configured).resolve() if configured else data_dir(env) / "dagster_home"


def partitions_start(env: Mapping[str, str] | None = None, today: date | None = None) -> str:
    """The first daily partition: FLEET_PARTITIONS_START, else the vendors' retention window
    (DEFAULT_PARTITIONS_DAYS) before today, UTC."""
    env = os.environ if env is None else env
    today = today or datetime.now(timezone.utc).date()
    value = _get(env, "FLEET_PARTITIONS_START") or (today - timedelta(days=DEFAULT_PARTITIONS_DAYS)).isoformat()
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"FLEET_PARTITIONS_START must be a date like 2026-01-01, got {value!r}") from exc
    return value


# Devices buffer fixes while offline and upload them up to 3 days late (FIELD-NOTES; the sandbox
# does the same), so the daily schedule re-loads that many days before yesterday.
DEFAULT_LATE_DATA_DAYS = 3
# Tracksolid keeps track points for three months: a longer window would only re-load empty days.
MAX_LATE_DATA_DAYS = 90
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def late_data_days(env: Mapping[str, str] | None = None) -> int:
    """How many days before yesterday the daily schedule re-loads to pick up late uploads."""
    return _days(os.environ if env is None else env, "FLEET_LATE_DATA_DAYS", DEFAULT_LATE_DATA_DAYS,
                 0, MAX_LATE_DATA_DAYS)


def _days(env: Mapping[str, str], name: str, default: int, least: int, most: int) -> int:
    """A whole number of days from ``name``, ``default`` when unset, refused outside least..most."""
    days = _whole_number(env, name, default, "a whole number of days")
    if not least <= days <= most:
        raise ConfigError(f"{name} must be between {least} and {most}, got {days}")
    return days


# AOVX documents no retention for its OTA report; its sandbox keeps a year, as do RuoYi log tables
# by default. The history asset reads this far back on its first run.
DEFAULT_AOVX_HISTORY_DAYS = 365
MAX_AOVX_HISTORY_DAYS = 3650


def aovx_history_days(env: Mapping[str, str] | None = None) -> int:
    """How far back the AOVX OTA history reaches on its first run (AOVX_OTA_HISTORY_DAYS)."""
    return _days(os.environ if env is None else env, "AOVX_OTA_HISTORY_DAYS", DEFAULT_AOVX_HISTORY_DAYS,
                 1, MAX_AOVX_HISTORY_DAYS)


def schedules_running(env: Mapping[str, str] | None = None) -> bool:
    """Whether schedules and sensors start switched on (production) or stopped (``make ui``)."""
    env = os.environ if env is None else env
    raw = (_get(env, "FLEET_SCHEDULES_RUNNING") or "0").lower()
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"FLEET_SCHEDULES_RUNNING must be 1 or 0 (or true/false), got {raw!r}")
    return raw in _TRUE


@dataclass(frozen=True)
class SandboxSettings:
    seed: int
    n_devices: int


def sandbox_settings(env: Mapping[str, str] | None = None) -> SandboxSettings:
    env = os.environ if env is None else env
    return SandboxSettings(seed=sandbox_seed(env), n_devices=sandbox_devices(env))


def sandbox_seed(env: Mapping[str, str] | None = None) -> int:
    return _whole_number(os.environ if env is None else env, "FLEET_SANDBOX_SEED", 42, "an integer")


def sandbox_devices(env: Mapping[str, str] | None = None) -> int:
    devices = _whole_number(os.environ if env is None else env, "FLEET_SANDBOX_DEVICES", 200, "an integer")
    if devices < 1:
        raise ConfigError("FLEET_SANDBOX_DEVICES must be at least 1")
    return devices


@dataclass(frozen=True)
class StepRetrySettings:
    """Dagster step retries of the source assets (see ``fleet_pipeline.ingest.source_assets``)."""

    max_retries: int
    delay_s: float


def step_retry_settings(env: Mapping[str, str] | None = None) -> StepRetrySettings:
    return StepRetrySettings(max_retries=step_retries(env), delay_s=step_retry_delay_s(env))


def step_retries(env: Mapping[str, str] | None = None) -> int:
    retries = _whole_number(os.environ if env is None else env, "FLEET_STEP_RETRIES", 2, "an integer")
    if retries < 0:
        raise ConfigError(f"FLEET_STEP_RETRIES must not be negative, got {retries}")
    return retries


def step_retry_delay_s(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = _get(env, "FLEET_STEP_RETRY_DELAY_S") or "60"
    try:
        delay = float(raw)
    except ValueError as exc:
        raise ConfigError(f"FLEET_STEP_RETRY_DELAY_S must be a number of seconds, got {raw!r}") from exc
    if delay < 0:
        raise ConfigError(f"FLEET_STEP_RETRY_DELAY_S must not be negative, got {raw!r}")
    return delay


# Every reader of a setting, each checking its own variables; a new setting adds its reader here.
READERS = (
    *VENDOR_SETTINGS.values(), tracksolid_mileage_unit, aovx_terminal_ids, partitions_start,
    late_data_days, aovx_history_days, schedules_running, sandbox_seed, sandbox_devices, step_retries,
    step_retry_delay_s,
)


def configuration_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """Every setting read once: one message per bad variable, in reading order (empty when valid)."""
    env = os.environ if env is None else env
    problems: list[str] = []
    for read in READERS:
        try:
            read(env)
        except ConfigError as exc:
            problems.append(str(exc))
    return list(dict.fromkeys(problems))


def check_configuration(env: Mapping[str, str] | None = None) -> None:
    """Raise one ConfigError listing every bad variable (one line each)."""
    problems = configuration_problems(env)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} settings are invalid:\n  " + "\n  ".join(problems))
