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
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet_pipeline.ingest.env import ConfigError, days_between, env_value, report_config_errors_briefly, whole_number
from fleet_pipeline.sources.accounts import check_accounts, file_accounts
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
    """Vendors with live credentials, their own variables or accounts of FLEET_ACCOUNTS_FILE
    (validated: partial configuration raises ConfigError)."""
    env = os.environ if env is None else env
    listed = file_accounts(env)
    return [vendor for vendor, read in VENDOR_SETTINGS.items() if read(env) is not None or listed.get(vendor)]


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


# Vendors keep about three months of history: a month more lets a fix be replayed over anything
# the vendor could still have served when it was made.
DEFAULT_ARCHIVE_RETENTION_DAYS = 120


def archive_root(env: Mapping[str, str] | None = None, database: str | Path | None = None,
                 lake_data_path: str | None = None) -> str:
    """Where the raw archive of a warehouse lives (``fleet_pipeline.ingest.archive``).

    In the distributed mode (FLEET_LAKE_DATA_PATH set) beside the lake's data path: the folder
    ``archive`` next to it, not inside it, where the lake's own clean-up would take the files for
    orphans. Otherwise ``archive/<warehouse file's name>`` beside the warehouse file (``database``,
    the working file by default; ``data/archive/sandbox`` in the sandbox), so that the sandbox's
    answers and the live ones, like their warehouses, never mix. ``lake_data_path`` (a warehouse
    resource's lake) wins over the variable.
    """
    env = os.environ if env is None else env
    lake = lake_data_path or env_value(env, "FLEET_LAKE_DATA_PATH")
    if lake:
        scheme, _, rest = lake.rstrip("/").rpartition("://")
        parent, _, leaf = rest.rpartition("/")
        if not leaf or (scheme and not parent):
            raise ConfigError(f"FLEET_LAKE_DATA_PATH {lake!r} has no parent folder to keep the raw archive "
                              "beside it: give the lake's data a folder of its own, e.g. s3://bucket/lake")
        return f"{scheme}://{parent}/archive" if scheme else str(Path(parent or "/").resolve() / "archive")
    text = str(database if database is not None else duckdb_path(env))
    if text == ":memory:" or text.startswith("md:"):
        # No file to sit beside: the data folder, under the database's name.
        return str(data_dir(env) / "archive" / (text.removeprefix("md:").strip(":") or "memory"))
    path = Path(text).resolve()
    return str(path.parent / "archive" / path.stem)


def archive_retention_days(env: Mapping[str, str] | None = None) -> int:
    """How many days of raw archive are kept (0: forever)."""
    days = whole_number(os.environ if env is None else env, "FLEET_ARCHIVE_RETENTION_DAYS",
                        DEFAULT_ARCHIVE_RETENTION_DAYS, "a whole number of days (0 keeps the archive forever)")
    if days < 0:
        raise ConfigError(f"FLEET_ARCHIVE_RETENTION_DAYS must not be negative (0 keeps the archive forever), got {days}")
    return days


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


# --- KPI marts (dbt reads the same variables through env_var in dbt_project.yml; these readers
# refuse a bad value before a run instead of letting dbt fail on it half-way).
DEFAULT_TIME_ZONE = "UTC"
DEFAULT_WORKING_HOURS = "Mon-Fri 08:00-18:00"
DEFAULT_OFFLINE_DAYS = 2
DEFAULT_LONG_STOP_DAYS = 7
DEFAULT_SPEED_LIMIT_KMH = 90
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def default_time_zone(env: Mapping[str, str] | None = None) -> str:
    """IANA zone of devices whose vendor tells none (Navixy tells its user's zone)."""
    value = env_value(os.environ if env is None else env, "FLEET_DEFAULT_TIME_ZONE") or DEFAULT_TIME_ZONE
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"FLEET_DEFAULT_TIME_ZONE must be an IANA time zone like Europe/Paris, got {value!r}") from None
    return value


@dataclass(frozen=True)
class WorkingHours:
    """Working days (ISO weekday numbers, Monday = 1) and the local hours worked on them."""

    days: frozenset[int]
    start_minute: int
    end_minute: int


def working_hours(env: Mapping[str, str] | None = None) -> WorkingHours:
    """FLEET_WORKING_HOURS: days (``Mon-Fri``, ``Mon,Wed,Sat``, ``Mon-Fri,Sun``) and ``HH:MM-HH:MM``."""
    raw = env_value(os.environ if env is None else env, "FLEET_WORKING_HOURS") or DEFAULT_WORKING_HOURS
    problem = ConfigError(f"FLEET_WORKING_HOURS must look like 'Mon-Fri 08:00-18:00' (days, then local "
                          f"hours with the end after the start), got {raw!r}")
    parts = raw.split()
    if len(parts) != 2:
        raise problem
    days: set[int] = set()
    for item in parts[0].split(","):
        first, _, last = item.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise problem
        a, b = WEEKDAYS.index(first) + 1, WEEKDAYS.index(last or first) + 1
        if b < a:
            raise problem
        days.update(range(a, b + 1))
    try:
        start, end = (datetime.strptime(t, "%H:%M") for t in parts[1].split("-"))
    except ValueError:
        raise problem from None
    start_minute, end_minute = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    if end_minute <= start_minute:
        raise problem
    return WorkingHours(frozenset(days), start_minute, end_minute)


def offline_days(env: Mapping[str, str] | None = None) -> int:
    """Days without a fix after which device_health_daily calls a device offline."""
    return days_between(os.environ if env is None else env, "FLEET_OFFLINE_DAYS", DEFAULT_OFFLINE_DAYS, 1, 365)


def long_stop_days(env: Mapping[str, str] | None = None) -> int:
    """Days standing still after which long_stops calls a vehicle not moved."""
    return days_between(os.environ if env is None else env, "FLEET_LONG_STOP_DAYS", DEFAULT_LONG_STOP_DAYS, 1, 365)


def speed_limit_kmh(env: Mapping[str, str] | None = None) -> int:
    """The fleet's speed limit for speeding_daily's time above the limit (the devices' own overspeed
    alarms keep the threshold configured on each device)."""
    limit = whole_number(os.environ if env is None else env, "FLEET_SPEED_LIMIT_KMH", DEFAULT_SPEED_LIMIT_KMH,
                         "a whole number of km/h")
    if not 10 <= limit <= 250:
        raise ConfigError(f"FLEET_SPEED_LIMIT_KMH must be between 10 and 250, got {limit}")
    return limit


WAREHOUSE_MODES = ("duckdb", "ducklake")
# What the lake keeps of its history: a snapshot older than this is expired by the maintenance job
# (time travel reaches back this far; every dbt build adds dozens of snapshots).
DEFAULT_LAKE_RETENTION_DAYS = 7
EXTENSION_SOURCES = ("wheels", "repository")
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def warehouse_mode(env: Mapping[str, str] | None = None) -> str:
    """``duckdb`` (the one working file, the default) or ``ducklake`` (a Postgres catalog and Parquet
    files: several machines write at once, docs/distributed.md)."""
    env = os.environ if env is None else env
    mode = (env_value(env, "FLEET_WAREHOUSE") or "duckdb").lower()
    if mode not in WAREHOUSE_MODES:
        raise ConfigError(f"FLEET_WAREHOUSE must be one of {', '.join(WAREHOUSE_MODES)}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class LakeSettings:
    """Where the DuckLake warehouse lives: its catalog (a Postgres database) and its data files."""

    catalog: str  # postgresql://user:password@host:port/database (may hold a secret: never print it)
    data_path: str  # a local folder (absolute) or an object-store URL (s3://...)
    extension_directory: Path
    extensions_from: str  # "wheels" (PyPI's, offline) or "repository" (DuckDB's INSTALL)

    @property
    def catalog_libpq(self) -> str:
        """The catalog as a libpq connection string (what DuckLake's ``ducklake:postgres:`` takes)."""
        return postgres_libpq(self.catalog)

    @property
    def catalog_shown(self) -> str:
        return redacted_url(self.catalog)


def postgres_url(env: Mapping[str, str], name: str) -> str | None:
    """A ``postgresql://`` URL from ``name``, or None when unset."""
    value = env_value(env, name)
    if value is None:
        return None
    if not value.startswith(_POSTGRES_SCHEMES):
        raise ConfigError(f"{name} must be a postgresql://user@host:port/database URL, got {redacted_url(value)!r}")
    parts = urlsplit(value)
    try:
        _ = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {redacted_url(value)!r}") from None
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(f"{name} must name a host and a database, got {redacted_url(value)!r}")
    return value


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def postgres_libpq(url: str) -> str:
    """A ``postgresql://`` URL as libpq's ``key=value`` string (query parameters such as sslmode kept)."""
    parts = urlsplit(url)
    fields = {"host": parts.hostname, "port": parts.port, "user": unquote(parts.username or "") or None,
              "password": unquote(parts.password or "") or None, "dbname": unquote(parts.path.lstrip("/"))}
    fields.update(parse_qsl(parts.query))
    return " ".join(f"{key}={_libpq_value(str(value))}" for key, value in fields.items() if value is not None)


def _libpq_value(value: str) -> str:
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def duckdb_extensions_from(env: Mapping[str, str] | None = None) -> str:
    """Where the DuckDB extensions of the lake and the Postgres serving target come from
    (FLEET_DUCKDB_EXTENSIONS): ``wheels`` (PyPI's, installed offline) or ``repository`` (DuckDB's)."""
    env = os.environ if env is None else env
    source = (env_value(env, "FLEET_DUCKDB_EXTENSIONS") or "wheels").lower()
    if source not in EXTENSION_SOURCES:
        raise ConfigError(f"FLEET_DUCKDB_EXTENSIONS must be one of {', '.join(EXTENSION_SOURCES)}, got {source!r}")
    return source


def duckdb_extension_directory(env: Mapping[str, str] | None = None) -> Path:
    """Where DuckDB extensions are installed for this machine (versioned subfolders inside)."""
    return data_dir(env) / "duckdb_extensions"


def lake_settings(env: Mapping[str, str] | None = None) -> LakeSettings | None:
    """The lake in ``ducklake`` mode; None in ``duckdb`` mode (where no FLEET_LAKE_* may be set)."""
    env = os.environ if env is None else env
    catalog = postgres_url(env, "FLEET_LAKE_CATALOG")
    data_path = env_value(env, "FLEET_LAKE_DATA_PATH")
    extensions_from = duckdb_extensions_from(env)
    if warehouse_mode(env) != "ducklake":
        stray = [name for name in ("FLEET_LAKE_CATALOG", "FLEET_LAKE_DATA_PATH") if env_value(env, name)]
        if stray:
            raise ConfigError(f"{' and '.join(stray)} set but FLEET_WAREHOUSE is not ducklake "
                              "(set FLEET_WAREHOUSE=ducklake, or unset them)")
        return None
    missing = [name for name, value in (("FLEET_LAKE_CATALOG", catalog), ("FLEET_LAKE_DATA_PATH", data_path))
               if value is None]
    if missing:
        raise ConfigError(f"FLEET_WAREHOUSE=ducklake needs {' and '.join(missing)} "
                          "(the catalog's postgresql:// URL and the folder or URL of the lake's files)")
    assert catalog is not None and data_path is not None
    if "://" not in data_path:
        data_path = str(Path(data_path).resolve())
    return LakeSettings(catalog=catalog, data_path=data_path.rstrip("/") + "/",
                        extension_directory=duckdb_extension_directory(env), extensions_from=extensions_from)


def lake_retention_days(env: Mapping[str, str] | None = None) -> int:
    """How many days of lake snapshots the maintenance job keeps (FLEET_LAKE_RETENTION_DAYS)."""
    return days_between(os.environ if env is None else env, "FLEET_LAKE_RETENTION_DAYS",
                        DEFAULT_LAKE_RETENTION_DAYS, 1, 3650)


def warehouse_description(env: Mapping[str, str] | None = None) -> str:
    """The warehouse in one line for people (no password): the file, or the lake's catalog and data."""
    lake = lake_settings(env)
    if lake is None:
        return str(duckdb_path(env))
    return f"DuckLake, catalog {lake.catalog_shown}, data {lake.data_path}"


def serving_postgres(env: Mapping[str, str] | None = None) -> str | None:
    """The Postgres database the marts are also published to (FLEET_SERVING_POSTGRES), or None."""
    return postgres_url(os.environ if env is None else env, "FLEET_SERVING_POSTGRES")


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


DEFAULT_CELERY_WORKER_LOST_S = 60


def celery_worker_lost_s(env: Mapping[str, str] | None = None) -> int:
    """FLEET_CELERY_WORKER_LOST_S: how long the worker running a step may leave the run's questions
    unanswered before the step counts as lost (the worker killed, its machine gone; ``celery_watch``)."""
    seconds = whole_number(os.environ if env is None else env, "FLEET_CELERY_WORKER_LOST_S",
                           DEFAULT_CELERY_WORKER_LOST_S, "a whole number of seconds")
    if not 5 <= seconds <= 86400:
        raise ConfigError(f"FLEET_CELERY_WORKER_LOST_S must be between 5 and 86400 seconds, got {seconds}")
    return seconds


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
    *(read for spec in VENDORS for read in spec.readers), check_accounts, partitions_start, late_data_days,
    schedules_running, sandbox_seed, sandbox_devices, step_retries, step_retry_delay_s, archive_retention_days,
    archive_root, default_time_zone, working_hours, offline_days, long_stop_days, speed_limit_kmh, warehouse_mode,
    lake_settings, lake_retention_days, serving_postgres, duckdb_extensions_from,
    dagster_postgres_url, executor_kind, celery_broker, celery_worker_lost_s, shared_state_url,
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
