"""Configuration read from environment variables: the general settings, and every vendor's through
the registry (each vendor's own variables are read by ``sources/<vendor>/settings.py``).

Every variable is listed in the README's configuration table. Secrets are only ever read by the
settings modules and handed to clients; none of them prints a secret.

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

from fleet_pipeline.ingest.env import ConfigError, days_between, env_value, report_config_errors_briefly, whole_number
from fleet_pipeline.sources.registry import VENDORS

__all__ = ["ConfigError"]  # raised by every reader here; callers catch settings.ConfigError

# Tracksolid keeps track points for three months (track.list: "within the last 3 months"); older
# partitions could never be loaded, so by default the partition set is that window, counted back
# from today (UTC), rather than a fixed day that leaves the UI listing months that cannot be filled.
DEFAULT_PARTITIONS_DAYS = 90


# Vendor -> reader of its live configuration (None when it has no credentials), for every vendor of
# the registry: one with credentials switches the whole pipeline to live mode.
VENDOR_SETTINGS = {spec.name: spec.settings for spec in VENDORS}
# The variables that belong to some vendor: a child process meant for the sandbox must not inherit them.
VENDOR_ENV_PREFIXES = tuple(spec.env_prefix for spec in VENDORS)


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
    configured = env_value(env, "FLEET_DATA_DIR")
    return Path(configured).resolve() if configured else project_root() / "data"


def duckdb_path(env: Mapping[str, str] | None = None) -> Path:
    """The working warehouse file: explicit, else a sandbox or a live file so the two never mix."""
    env = os.environ if env is None else env
    configured = env_value(env, "FLEET_DUCKDB_PATH")
    if configured:
        return Path(configured).resolve()
    name = "sandbox.duckdb" if is_sandbox_mode(env) else "fleet.duckdb"
    return data_dir(env) / name


def serving_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where BI tools read: the published DuckDB copy and the Parquet export of the marts."""
    env = os.environ if env is None else env
    configured = env_value(env, "FLEET_SERVING_DIR")
    return Path(configured).resolve() if configured else data_dir(env) / "serving"


def reports_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the rendered HTML report goes."""
    return data_dir(env) / "reports"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where clients keep state shared across processes and runs (tokens, rate-limit ledgers)."""
    return data_dir(env) / "cache"


def dagster_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env_value(env, "DAGSTER_HOME")
    return Path(configured).resolve() if configured else data_dir(env) / "dagster_home"


def partitions_start(env: Mapping[str, str] | None = None, today: date | None = None) -> str:
    """The first daily partition: FLEET_PARTITIONS_START, else the vendors' retention window
    (DEFAULT_PARTITIONS_DAYS) before today, UTC."""
    env = os.environ if env is None else env
    today = today or datetime.now(timezone.utc).date()
    value = env_value(env, "FLEET_PARTITIONS_START") or (today - timedelta(days=DEFAULT_PARTITIONS_DAYS)).isoformat()
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"FLEET_PARTITIONS_START must be a date like 2026-01-01, got {value!r}") from exc
    return value


# Devices buffer fixes while offline and upload them up to 3 days late (docs/vendor-apis/FIELD-NOTES.md; the sandbox
# does the same), so the daily schedule re-loads that many days before yesterday.
DEFAULT_LATE_DATA_DAYS = 3
# Tracksolid keeps track points for three months: a longer window would only re-load empty days.
MAX_LATE_DATA_DAYS = 90
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def late_data_days(env: Mapping[str, str] | None = None) -> int:
    """How many days before yesterday the daily schedule re-loads to pick up late uploads."""
    return days_between(os.environ if env is None else env, "FLEET_LATE_DATA_DAYS", DEFAULT_LATE_DATA_DAYS,
                        0, MAX_LATE_DATA_DAYS)


def schedules_running(env: Mapping[str, str] | None = None) -> bool:
    """Whether schedules and sensors start switched on (production) or stopped (``make ui``)."""
    env = os.environ if env is None else env
    raw = (env_value(env, "FLEET_SCHEDULES_RUNNING") or "0").lower()
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
    return whole_number(os.environ if env is None else env, "FLEET_SANDBOX_SEED", 42, "an integer")


def sandbox_devices(env: Mapping[str, str] | None = None) -> int:
    devices = whole_number(os.environ if env is None else env, "FLEET_SANDBOX_DEVICES", 200, "an integer")
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
    retries = whole_number(os.environ if env is None else env, "FLEET_STEP_RETRIES", 2, "an integer")
    if retries < 0:
        raise ConfigError(f"FLEET_STEP_RETRIES must not be negative, got {retries}")
    return retries


def step_retry_delay_s(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env_value(env, "FLEET_STEP_RETRY_DELAY_S") or "60"
    try:
        delay = float(raw)
    except ValueError as exc:
        raise ConfigError(f"FLEET_STEP_RETRY_DELAY_S must be a number of seconds, got {raw!r}") from exc
    if delay < 0:
        raise ConfigError(f"FLEET_STEP_RETRY_DELAY_S must not be negative, got {raw!r}")
    return delay


# The distributed mode (docs/distributed.md): each variable unset keeps the embedded behaviour.
EXECUTORS = ("forkserver", "celery")


def dagster_postgres_url(env: Mapping[str, str] | None = None) -> str | None:
    """FLEET_DAGSTER_POSTGRES: the Dagster instance's runs, events and schedules in Postgres (else
    SQLite files in DAGSTER_HOME). The driver must be named: with SQLAlchemy 2.1 a bare
    ``postgresql://`` looks for psycopg 3, which is not installed ("No module named 'psycopg'")."""
    url = env_value(os.environ if env is None else env, "FLEET_DAGSTER_POSTGRES")
    if url and not url.startswith("postgresql+psycopg2://"):
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise ConfigError("FLEET_DAGSTER_POSTGRES must start with postgresql+psycopg2:// (the driver named), "
                          f"got a URL starting {scheme!r}")
    return url


def executor_kind(env: Mapping[str, str] | None = None) -> str:
    """FLEET_EXECUTOR: step processes forked on this machine (default) or steps on Celery workers."""
    env = os.environ if env is None else env
    kind = (env_value(env, "FLEET_EXECUTOR") or "forkserver").lower()
    if kind not in EXECUTORS:
        raise ConfigError(f"FLEET_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "celery" and not env_value(env, "FLEET_CELERY_BROKER"):
        raise ConfigError("FLEET_EXECUTOR=celery needs FLEET_CELERY_BROKER (redis://host:port/db)")
    return kind


def celery_broker(env: Mapping[str, str] | None = None) -> str | None:
    """FLEET_CELERY_BROKER: the Redis the Celery workers take steps from (and report results to)."""
    return _redis_url(os.environ if env is None else env, "FLEET_CELERY_BROKER")


def shared_state_url(env: Mapping[str, str] | None = None) -> str | None:
    """FLEET_SHARED_STATE: the Redis holding vendor rate-limit ledgers, tokens and session hashes for
    every machine; unset = files in the cache folder, shared by the processes of one machine."""
    return _redis_url(os.environ if env is None else env, "FLEET_SHARED_STATE")


def _redis_url(env: Mapping[str, str], name: str) -> str | None:
    url = env_value(env, name)
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must be a Redis URL (redis://host:port/db), got one starting "
                          f"{url.split('://', 1)[0]!r}")
    return url


# Every reader of a setting, each checking its own variables: the vendors' from their specs, then the
# general ones (a new general setting adds its reader here).
READERS = (
    *(read for spec in VENDORS for read in spec.readers), partitions_start, late_data_days, schedules_running,
    sandbox_seed, sandbox_devices, step_retries, step_retry_delay_s,
    dagster_postgres_url, executor_kind, celery_broker, shared_state_url,
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
    """Raise one ConfigError listing every bad variable (one line each).

    Should it end the process, the error prints as that list alone (report_config_errors_briefly).
    """
    problems = configuration_problems(env)
    if problems:
        report_config_errors_briefly()
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} settings are invalid:\n  " + "\n  ".join(problems))
