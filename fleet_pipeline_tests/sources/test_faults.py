"""Every sandbox fault knob, end to end: vendor misbehaves over real HTTP -> assets -> DuckDB.

The rule under test: a run against a misbehaving vendor ends either in the partition a clean run
writes (same rows, same rejects) or in a failed step whose message names the vendor and the call
(and holds no secret), with the warehouse exactly as it was before the run. Never a half-written
or silently short partition.

A run that is expected to survive starts from an empty warehouse (so the rows it leaves are its
own); a run that is expected to fail starts from a copy of the clean warehouse (so a partial
write would show). Each case also checks, in the sandbox's request log, that the fault really
happened. Client-level behaviour (one call, one retry) is tested in test_http.py and
sources/test_*_client.py; here it is whole assets and the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import telesto as sandbox_telesto
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.server import SandboxServer
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy import assets as navixy_assets
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.registry import BY_NAME
from fleet_pipeline.sources.spec import VendorSpec
from fleet_pipeline.sources.telesto import assets as telesto_assets
from fleet_pipeline.sources.telesto.resources import TelestoResource
from fleet_pipeline.sources.tracksolid import assets as tracksolid_assets
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

# A day whose late uploads have all arrived: a clean run equals the world's truth.
DAY = (datetime.now(timezone.utc) - timedelta(days=5)).date().isoformat()
WORLD = World(seed=42, n_devices=12)
# Columns that record when a row was written, not what the vendor said.
RUN_TIME_COLUMNS = {"snapshot_at", "rejected_at"}
SURVIVES, FAILS = "survives", "fails"
TOKEN_GET_EVERY_1S = {"token_get_interval_s": 1}
SHORT_TOKEN_GET_WAIT = {"token_get_interval_s": 1.1, "retry_attempts": 5}
# A credential quoted from a vendor answer, in a log line or an error: never, whatever its value.
QUOTED_CREDENTIAL = re.compile(r'"(accessToken|refreshToken|hash|access_token)"\s*:\s*"[^"]')


@dataclass(frozen=True)
class Vendor:
    spec: VendorSpec                            # its name, sandbox and resource key, from the registry
    make_resource: Callable[..., Any]           # (server, cache_dir, **overrides) -> resource
    assets: list
    partition: str | None
    secrets: tuple[str, ...]
    cache_secret_keys: tuple[str, ...] = ()    # token fields of its cache files, secrets too

    @property
    def name(self) -> str:  # as vendor errors name it: "<name> <call>: ..."
        return self.spec.name

    @property
    def resource_key(self) -> str:
        return self.spec.resource_key

    def make_server(self, world: World) -> SandboxServer:
        return self.spec.sandbox_module().make_server(world)


def _tracksolid(server: SandboxServer, cache_dir: Path, **overrides: Any) -> TracksolidResource:
    settings = dict(
        base_url=server.base_url + sandbox_tracksolid.ROUTE_PATH, app_key=sandbox_tracksolid.APP_KEY,
        app_secret=sandbox_tracksolid.APP_SECRET, user_id=sandbox_tracksolid.USER_ID,
        user_password=sandbox_tracksolid.USER_PASSWORD, cache_dir=str(cache_dir),
        retry_attempts=3, backoff_base_s=0.05, throttle_backoff_base_s=0.05,
    )
    return TracksolidResource(**{**settings, **overrides})


def _navixy(server: SandboxServer, cache_dir: Path, login: bool = False, **overrides: Any) -> NavixyResource:
    auth = (dict(login=sandbox_navixy.LOGIN, password=sandbox_navixy.PASSWORD) if login
            else dict(api_key=sandbox_navixy.API_KEY))
    settings = dict(base_url=server.base_url + sandbox_navixy.API_PREFIX, cache_dir=str(cache_dir),
                    retry_attempts=3, backoff_base_s=0.05, **auth)
    return NavixyResource(**{**settings, **overrides})


def _telesto(server: SandboxServer, cache_dir: Path, **overrides: Any) -> TelestoResource:
    return TelestoResource(base_url=server.base_url, api_key=sandbox_telesto.API_KEY,
                           cache_dir=str(cache_dir), **overrides)


VENDORS = {
    "tracksolid": Vendor(
        BY_NAME["tracksolid"], _tracksolid,
        [tracksolid_assets.trips, tracksolid_assets.track_points], DAY,
        (sandbox_tracksolid.APP_SECRET, sandbox_tracksolid.USER_PASSWORD,
         hashlib.md5(sandbox_tracksolid.USER_PASSWORD.encode()).hexdigest()),
        cache_secret_keys=("access_token", "refresh_token"),
    ),
    "navixy": Vendor(
        BY_NAME["navixy"], _navixy,
        [a for a in navixy_assets.navixy_assets if a.partitions_def is not None], DAY,
        (sandbox_navixy.API_KEY, sandbox_navixy.PASSWORD),
        cache_secret_keys=("hash",),
    ),
    "telesto": Vendor(
        BY_NAME["telesto"], _telesto,
        [telesto_assets.products], None, (sandbox_telesto.API_KEY,),
    ),
}


@dataclass(frozen=True)
class Fault:
    id: str
    vendor: str
    outcome: str                                # SURVIVES or FAILS
    knobs: dict[str, Any] = field(default_factory=dict)
    happened: Callable[[SandboxServer], bool] = lambda server: True
    resource: dict[str, Any] = field(default_factory=dict)
    stop_server: bool = False                   # the vendor is unreachable for the whole run
    # (n, knobs): once the vendor has answered n requests, set the knobs that knobs(server) gives.
    mid_run: tuple[int, Callable[[SandboxServer], dict[str, Any]]] | None = None


def _after_first_token(server: SandboxServer) -> datetime:
    """The second after the one the run's first token was issued in: tokens carry their issue time
    in whole seconds, and the client's next token.get comes more than a second later."""
    first = next(r for r in server.requests() if r.vendor_method == "jimi.oauth.token.get")
    return first.at.replace(microsecond=0) + timedelta(seconds=1)


@contextmanager
def _mid_run(server: SandboxServer, change: tuple[int, Callable[[SandboxServer], dict[str, Any]]] | None):
    """Watch the vendor's request log and change its knobs once it has served n requests."""
    if change is None:
        yield
        return
    after, knobs = change
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            if len(server.requests()) >= after:
                server.knobs.set(**knobs(server))
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


FAULTS = [
    Fault("latency", "tracksolid", SURVIVES, {"latency_s": 0.05},
          happened=lambda s: len(s.requests()) > 10),
    Fault("5xx-burst", "tracksolid", SURVIVES, {"fail_next_5xx": 2},
          happened=lambda s: s.count(fault="5xx") == 2),
    # A seeded 30 % of calls fail; six attempts a call make a run of bad luck improbable, and the
    # seed makes the run reproducible.
    Fault("5xx-rate", "tracksolid", SURVIVES, {"error_rate_5xx": 0.3, "fault_seed": 7},
          happened=lambda s: s.count(fault="5xx") >= 5, resource={"retry_attempts": 6}),
    # Body faults hit the run's first calls: token.get answers that the sandbox counted against
    # its once-a-minute limit (shrunk to 1 s here) but the client never read, so the client must
    # wait the limit out. The truncated answers hold half a token, which must not be logged.
    Fault("malformed-json", "tracksolid", SURVIVES, {"malformed_json_next": 2, **TOKEN_GET_EVERY_1S},
          happened=lambda s: s.count(fault="malformed_json") == 2, resource=SHORT_TOKEN_GET_WAIT),
    Fault("truncated-short", "tracksolid", SURVIVES,
          {"truncated_body_next": 2, "truncate_mode": "short", **TOKEN_GET_EVERY_1S},
          happened=lambda s: s.count(fault="truncated") == 2, resource=SHORT_TOKEN_GET_WAIT),
    Fault("truncated-drop", "tracksolid", SURVIVES,
          {"truncated_body_next": 2, "truncate_mode": "drop", **TOKEN_GET_EVERY_1S},
          happened=lambda s: s.count(fault="truncated") == 2, resource=SHORT_TOKEN_GET_WAIT),
    Fault("1006-storm", "tracksolid", SURVIVES, {"force_1006_next": 4},
          happened=lambda s: s.count(vendor_code="1006") == 4, resource={"retry_attempts": 6}),
    # Mid-run, the vendor stops accepting every token issued so far (expired, revoked): the call
    # in flight gets 1004, the refresh of that token too, and the client must get a new token
    # (after the once-a-minute wait, 1 s here) and retry the call.
    Fault("token-expiry", "tracksolid", SURVIVES, TOKEN_GET_EVERY_1S,
          happened=lambda s: s.count(vendor_code="1004") >= 1 and s.count("jimi.oauth.token.get") == 2,
          resource=SHORT_TOKEN_GET_WAIT, mid_run=(8, lambda s: {"revoke_tokens_issued_before": _after_first_token(s)})),
    Fault("down-5xx", "tracksolid", FAILS, {"fail_next_5xx": 1_000_000},
          happened=lambda s: s.count(fault="5xx") >= 3),
    Fault("down-unreachable", "tracksolid", FAILS, stop_server=True),
    Fault("malformed-forever", "navixy", FAILS, {"malformed_json_next": 1_000_000},
          happened=lambda s: s.count(fault="malformed_json") >= 3),
    Fault("code-15-storm", "navixy", SURVIVES, {"force_429_next": 4},
          happened=lambda s: s.count(status=429) == 4, resource={"retry_attempts": 6}),
    # Mid-run, the vendor ends the run's session: the call in flight gets 4, and the client must
    # log in again and retry it.
    Fault("session-expiry", "navixy", SURVIVES,
          happened=lambda s: s.count(vendor_code="4") >= 1 and s.count("user/auth") >= 2,
          resource={"login": True}, mid_run=(8, lambda s: {"end_first_sessions": s.count("user/auth")})),
    Fault("429", "telesto", FAILS, {"force_429_next": 1}, happened=lambda s: s.count(status=429) == 1),
]


def _snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    """Every row of every table (run-time columns left out), in a stable order."""
    if not warehouse.exists():
        return {}
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        tables = conn.execute("select table_schema, table_name from information_schema.tables order by 1, 2").fetchall()
        snapshot = {}
        for schema, table in tables:
            columns = [c for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position", [schema, table]).fetchall() if c not in RUN_TIME_COLUMNS]
            selected = ", ".join(f'"{c}"' for c in columns)
            snapshot[f"{schema}.{table}"] = conn.execute(
                f'select {selected} from "{schema}"."{table}" order by all').fetchall()
        return snapshot


def _run(vendor: Vendor, resource: Any, warehouse: Path):
    return materialize(
        vendor.assets, partition_key=vendor.partition, instance=DagsterInstance.ephemeral(),
        resources={vendor.resource_key: resource, "duckdb": WarehouseResource(database=str(warehouse))},
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per vendor, the warehouse a run against a well-behaved vendor writes (built on first use)."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("clean")

    def get(name: str) -> Path:
        if name not in built:
            vendor = VENDORS[name]
            warehouse = root / f"{name}.duckdb"
            with vendor.make_server(WORLD) as server:
                result = _run(vendor, vendor.make_resource(server, root / f"{name}-cache"), warehouse)
            assert result.success, f"the clean {name} run failed"
            assert any(_snapshot(warehouse).values()), f"the clean {name} run wrote nothing"
            built[name] = warehouse
        return built[name]

    return get  # type: ignore[return-value]


def _innermost_error(event) -> str:
    """The message of the exception that started the failure, without its class name."""
    error = event.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    prefix = message.split(": ", 1)[0]
    return message.split(": ", 1)[1] if prefix.endswith(error.cls_name) else message


def _cached_secrets(cache_dir: Path, keys: tuple[str, ...]) -> list[str]:
    found = []
    for path in cache_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict):
            found += [str(v) for k, v in data.items() if k in keys and v]
    return found


def _assert_no_secret(texts: list[str], secrets: list[str], fault: Fault) -> None:
    for text in texts:
        assert not [s for s in secrets if s in text], f"{fault.id}: a secret is in {text[:300]!r}"
        assert not QUOTED_CREDENTIAL.search(text), f"{fault.id}: a credential is quoted in {text[:300]!r}"


@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.vendor}-{f.id}" for f in FAULTS])
def test_a_fault_ends_in_the_clean_partition_or_a_clear_failure(fault: Fault, clean_runs, tmp_path, caplog):
    vendor = VENDORS[fault.vendor]
    clean = clean_runs(fault.vendor)
    warehouse, cache = tmp_path / "warehouse.duckdb", tmp_path / "cache"
    if fault.outcome == FAILS:
        shutil.copy(clean, warehouse)  # a partial write over the clean partition would show
    before = _snapshot(warehouse)
    caplog.set_level("DEBUG")

    with vendor.make_server(WORLD) as server:
        server.knobs.set(**fault.knobs)
        if fault.stop_server:
            server.stop()
        with _mid_run(server, fault.mid_run):
            result = _run(vendor, vendor.make_resource(server, cache, **fault.resource), warehouse)
        assert fault.happened(server), f"the {fault.id} fault did not happen: {server.requests()[-5:]}"
        methods = {r.vendor_method for r in server.requests() if r.vendor_method}

    failures = [e for e in result.all_events if e.is_step_failure]
    secrets = [*vendor.secrets, *_cached_secrets(cache, vendor.cache_secret_keys)]
    logged = [r.getMessage() for r in caplog.records] + [e.message or "" for e in result.all_events]
    _assert_no_secret(logged + [e.step_failure_data.error.to_string() for e in failures], secrets, fault)
    if fault.outcome == SURVIVES:
        assert result.success, f"{fault.id}: {[_innermost_error(e) for e in failures]}"
        assert _snapshot(warehouse) == _snapshot(clean), f"{fault.id}: the partition differs from a clean run"
        return

    assert failures and not result.success, f"{fault.id}: the run should have failed"
    assert _snapshot(warehouse) == before, f"{fault.id}: a failed run changed the warehouse"
    for event in failures:
        message = _innermost_error(event)
        # "<vendor> <call>: <what went wrong>", the call being one the vendor was really asked
        # (or, when it was unreachable, one of the calls a run starts with).
        assert message.startswith(f"{vendor.name} "), message
        call = message[len(vendor.name) + 1:].split(": ", 1)[0]
        assert call in methods or (fault.stop_server and call), f"{fault.id}: unknown call in {message!r}"
