"""The raw archive and replay: a week of every vendor loaded over real HTTP from the embedded
sandboxes, then the raw tables wiped and rebuilt from the archive alone.

* the replayed tables equal the loaded ones row for row (every raw table of every vendor);
* a changed typing rule, replayed, changes exactly the rows it should: which rows those are is
  read from the vendor's own answers in the archive, not from what the pipeline made of them;
* replay sends nothing: no sandbox starts and no HTTP request leaves the process;
* no credential, token or signature is in the archive's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from fleet_pipeline import settings
from fleet_pipeline.automation.backfill import RANGE_END_TAG, RANGE_START_TAG
from fleet_pipeline.automation.replay import NothingToReplay, ReplayRun, plan_replay
from fleet_pipeline.cli import vendor_tables
from fleet_pipeline.ingest import source_assets, vendor_resource
from fleet_pipeline.ingest.archive import Archive, ArchiveReplay
from fleet_pipeline.ingest.http import VendorAPIError
from fleet_pipeline.ingest.http.recording import Recorder
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox.aovx import protocol as aovx_protocol
from fleet_pipeline.sandbox.navixy import protocol as navixy_protocol
from fleet_pipeline.sandbox.telesto import protocol as telesto_protocol
from fleet_pipeline.sandbox.teltonika import protocol as teltonika_protocol
from fleet_pipeline.sandbox.tracksolid import protocol as tracksolid_protocol
from fleet_pipeline.sources.registry import VENDORS
from fleet_pipeline.sources.tracksolid import assets as tracksolid_assets
from fleet_pipeline.sources.tracksolid.client import TracksolidClient

TODAY = datetime.now(timezone.utc).date()
# Complete days whose late uploads have arrived: a week ending four days ago.
WEEK = [TODAY - timedelta(days=n) for n in range(10, 3, -1)]
DEVICES = 8
# The typing rule the test changes: speeds above this are capped (a deliberate, visible change).
SPEED_CAP_KMH = 60.0
# When a row was rejected is the time of the load that rejected it, replayed or not.
LOAD_TIME_COLUMNS = {"rejected_at"}


def _resources(tmp: Path) -> dict:
    resources: dict = {"duckdb": WarehouseResource(database=str(tmp / "warehouse.duckdb"))}
    for spec in VENDORS:
        resources[spec.resource_key] = spec.resource_class()(
            sandbox_devices=DEVICES, cache_dir=str(tmp / "cache"), retry_attempts=3, backoff_base_s=0.05)
    return resources


def _assets(partitioned: bool) -> list:
    return [asset for spec in VENDORS for asset in spec.load_assets()
            if (asset.partitions_def is not None) == partitioned]


def _succeeded(result) -> None:
    if result.success:
        return
    errors = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            errors.append(f"{event.step_key}: {error.message.strip()}")
    raise AssertionError(f"run {result.run_id} failed: {errors}")


@dataclass
class LoadedWeek:
    tmp: Path
    resources: dict

    @property
    def database(self) -> Path:
        return self.tmp / "warehouse.duckdb"

    @property
    def archive(self) -> Archive:
        return Archive(settings.archive_root(database=str(self.database)))


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> LoadedWeek:
    """Today's snapshots; the first four days in one run (a backfill's window), the last three day
    by day, and one of them loaded twice (two archives of one day: the later one counts)."""
    tmp = tmp_path_factory.mktemp("archive_week")
    resources = _resources(tmp)
    instance = DagsterInstance.ephemeral()
    _succeeded(materialize(_assets(False), resources=resources, instance=instance, raise_on_error=False))
    events = _assets(True)
    window = {RANGE_START_TAG: WEEK[0].isoformat(), RANGE_END_TAG: WEEK[3].isoformat()}
    _succeeded(materialize(events, tags=window, resources=resources, instance=instance, raise_on_error=False))
    for day in [*WEEK[4:], WEEK[5]]:
        _succeeded(materialize(events, partition_key=day.isoformat(), resources=resources, instance=instance,
                               raise_on_error=False))
    return LoadedWeek(tmp, resources)


def _raw_tables(database: Path) -> list[str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        names = conn.execute("select table_schema, table_name from information_schema.tables "
                             "where table_schema like 'raw_%' order by all").fetchall()
    return [f"{schema}.{name}" for schema, name in names]


def _contents(database: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return {table: conn.execute(f"select * from {table}").pl().drop(LOAD_TIME_COLUMNS, strict=False)
                .sort(pl.all(), nulls_last=True) for table in _raw_tables(database)}


def _wipe(database: Path, tables: list[str]) -> None:
    with duckdb.connect(str(database)) as conn:
        for table in tables:
            conn.execute(f"delete from {table}")


@pytest.fixture
def no_network(monkeypatch) -> Iterator[list[str]]:
    """Every attempt to send a request or start a sandbox is recorded and fails the step."""
    attempts: list[str] = []

    def send(session, request, **kwargs):
        attempts.append(f"{request.method} {request.url}")
        raise AssertionError(f"replay sent a request: {request.method} {request.url}")

    def make_sandbox(resource, world):
        attempts.append(f"{resource.vendor} sandbox started")
        raise AssertionError(f"replay started the {resource.vendor} sandbox")

    monkeypatch.setattr(requests.Session, "send", send)
    monkeypatch.setattr(vendor_resource.VendorResource, "make_sandbox", make_sandbox)
    yield attempts


def _replay(week: LoadedWeek, run: ReplayRun) -> None:
    selection = [asset for asset in _assets(run.partitioned)
                 if asset.key in {AssetKey([f"raw_{run.vendor}", table]) for table in run.tables}]
    _succeeded(materialize(selection, partition_key=run.partition_key, tags=run.tags(week.archive.root),
                           resources=week.resources, instance=DagsterInstance.ephemeral(), raise_on_error=False))


def _replay_week(week: LoadedWeek, vendor: str, table: str | None = None) -> list[ReplayRun]:
    """Today's snapshots (when ``table`` is none), then the week of the partitioned tables."""
    tables = vendor_tables(vendor)
    snapshots = {name: False for name, daily in tables.items() if not daily and table is None}
    runs = plan_replay(week.archive, vendor, TODAY, TODAY, snapshots) if snapshots else []
    daily = {name: True for name, daily in tables.items() if daily}
    if daily:
        runs += plan_replay(week.archive, vendor, WEEK[0], WEEK[-1], daily, table)
    for run in runs:
        _replay(week, run)
    return runs


def test_a_week_wiped_and_replayed_from_the_archive_is_identical_without_a_request(week, no_network):
    loaded = _contents(week.database)
    assert sum(frame.height for frame in loaded.values()) > 10_000
    for vendor in ("tracksolid", "navixy"):
        assert any(loaded[f"raw_{vendor}.{table}"].height for table, daily in vendor_tables(vendor).items() if daily)
    _wipe(week.database, list(loaded))
    assert all(frame.height == 0 for frame in _contents(week.database).values())

    runs = {spec.name: _replay_week(week, spec.name) for spec in VENDORS}

    # The week was loaded as a four-day window and three days, one of them twice: the window and
    # the later load of the twice-loaded day are replayed, the earlier one is not.
    windows = sorted({(run.first, run.last) for run in runs["tracksolid"] if run.partitioned})
    assert windows == [(WEEK[0], WEEK[3]), (WEEK[4], WEEK[4]), (WEEK[5], WEEK[5]), (WEEK[6], WEEK[6])]
    replayed = _contents(week.database)
    assert list(replayed) == list(loaded)
    for table, frame in loaded.items():
        assert replayed[table].equals(frame), f"{table}: {replayed[table].height} rows replayed, {frame.height} loaded"
    assert no_network == []


def _archived_speeds(week: LoadedWeek) -> list[tuple[str, str, float]]:
    """(imei, gpsTime, gpsSpeed) of every fix Tracksolid sent in the answers the table was made of."""
    runs = plan_replay(week.archive, "tracksolid", WEEK[0], WEEK[-1], vendor_tables("tracksolid"), "track_points")
    fixes = []
    for step in week.archive.steps("tracksolid", "track_points"):
        if not any(step.run_id == run.run_id for run in runs):
            continue
        for answer in week.archive.read(step.path).answers:
            if answer.call != "jimi.device.track.list":
                continue
            imei = json.loads(answer.request)["form"]["imei"]
            days = {day.isoformat() for day in step.days}
            fixes += [(imei, fix["gpsTime"], float(fix["gpsSpeed"])) for fix in json.loads(answer.body)["result"]
                      if fix["gpsTime"][:10] in days]
    return fixes


def test_a_changed_typing_rule_replayed_changes_exactly_its_rows(week, monkeypatch, no_network):
    before = _contents(week.database)
    points = "raw_tracksolid.track_points"
    sent = _archived_speeds(week)
    # Tracksolid writes hours without a leading zero now and then ("2026-11-27 8:13:48").
    expected = {(imei, datetime.strptime(at, "%Y-%m-%d %H:%M:%S")) for imei, at, speed in sent
                if speed > SPEED_CAP_KMH}
    assert expected, "the sandbox sent no fix above the cap: the test would prove nothing"
    assert len(set(sent)) == before[points].height

    unknown_as_null = tracksolid_assets.unknown_as_null

    def capped(*columns: str) -> list[pl.Expr]:
        rules = unknown_as_null(*columns)
        cap = pl.when(pl.col("speed_kmh") > SPEED_CAP_KMH).then(SPEED_CAP_KMH).otherwise(pl.col("speed_kmh"))
        return [cap.alias("speed_kmh") if rule.meta.output_name() == "speed_kmh" else rule for rule in rules]

    monkeypatch.setattr(tracksolid_assets, "unknown_as_null", capped)
    _replay_week(week, "tracksolid", "track_points")

    after = _contents(week.database)
    for table in before:
        if table != points:
            assert after[table].equals(before[table]), f"{table} changed, only {points} was replayed"
    key = ["imei", "gps_time"]
    joined = before[points].join(after[points], on=key, how="full", suffix="_after", coalesce=True)
    assert joined.height == before[points].height == after[points].height
    changed = joined.filter(pl.any_horizontal(
        pl.col(column).ne_missing(pl.col(f"{column}_after")) for column in before[points].columns if column not in key))
    assert set(changed.select(key).iter_rows()) == expected
    assert (changed["speed_kmh_after"] == SPEED_CAP_KMH).all()
    assert (changed["speed_kmh"] > SPEED_CAP_KMH).all()
    assert no_network == []


def _secrets(week: LoadedWeek) -> set[str]:
    """The sandboxes' credentials, and every token the run was issued (from the clients' caches)."""
    values = {tracksolid_protocol.APP_SECRET, tracksolid_protocol.USER_PASSWORD, navixy_protocol.API_KEY,
              navixy_protocol.PASSWORD, teltonika_protocol.API_TOKEN, aovx_protocol.TOKEN, telesto_protocol.API_KEY}
    for cached in (week.tmp / "cache").glob("*.json"):
        state = json.loads(cached.read_text())
        if not isinstance(state, dict):  # a rate-limit ledger: a list of call times
            continue
        values |= {str(v) for k, v in state.items() if ("token" in k or "hash" in k) and v}
    forms = set()
    for value in values:
        md5 = hashlib.md5(value.encode()).hexdigest()
        forms |= {value, md5, md5.upper(), urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    return forms


def test_no_credential_token_or_signature_is_archived(week):
    secrets = _secrets(week)
    assert any(len(value) > 100 for value in secrets), "no issued token found: the test would prove less"
    files = [Path(step.path) for spec in VENDORS for step in week.archive.steps(spec.name)]
    assert {spec.name for spec in VENDORS} <= {path.relative_to(week.archive.root).parts[0] for path in files}
    for path in files:
        text = path.read_bytes().decode("latin-1")
        table = pq.read_table(path)
        text += json.dumps(table.to_pylist(), default=str)
        leaked = [value[:6] + "..." for value in secrets if value in text]
        assert not leaked, f"{path}: holds secrets {leaked}"
        for request in table.column("request").to_pylist():
            form = json.loads(request)["form"] or {}
            assert "sign" not in form and "timestamp" not in form, f"{path}: a volatile field was archived"


def test_a_day_without_archive_is_a_clear_error(week):
    earlier = WEEK[0] - timedelta(days=2)
    with pytest.raises(NothingToReplay, match=rf"tracksolid.track_points: no archive for {earlier}, "
                                              rf"{earlier + timedelta(days=1)}"):
        plan_replay(week.archive, "tracksolid", earlier, WEEK[0], vendor_tables("tracksolid"), "track_points")
    with pytest.raises(NothingToReplay, match="tracksolid has no table 'nope'"):
        plan_replay(week.archive, "tracksolid", WEEK[0], WEEK[0], vendor_tables("tracksolid"), "nope")


def test_retention_removes_partitions_older_than_it_and_zero_keeps_all(tmp_path):
    archive = Archive(str(tmp_path / "archive"))
    now = datetime(2026, 11, 20, 1, 30)
    for day in (date(2026, 7, 1), date(2026, 7, 22), date(2026, 7, 23), date(2026, 11, 19)):
        archive.write("navixy", "trips", [day], f"run-{day}", now, [])
    archive.write("navixy", "trips", [date(2026, 7, 1), date(2026, 7, 24)], "range", now, [])
    archive.write("navixy", "events", [date(2026, 7, 1)], "other-table", now, [])
    assert archive.prune("navixy", "trips", date(2026, 11, 20), 0) == []
    assert len(archive.steps("navixy", "trips")) == 5
    # 120 days before 2026-11-20 is 2026-07-23: a partition ending before it goes.
    removed = archive.prune("navixy", "trips", date(2026, 11, 20), 120)
    assert sorted(Path(path).name for path in removed) == ["2026-07-01", "2026-07-22"]
    assert sorted((step.first, step.last) for step in archive.steps("navixy", "trips")) == [
        (date(2026, 7, 1), date(2026, 7, 24)), (date(2026, 7, 23), date(2026, 7, 23)),
        (date(2026, 11, 19), date(2026, 11, 19))]
    assert [step.run_id for step in archive.steps("navixy", "events")] == ["other-table"]


def test_the_archive_root_follows_the_warehouse_or_sits_beside_the_lake(tmp_path):
    assert settings.archive_root({}, tmp_path / "fleet.duckdb") == str(tmp_path / "archive" / "fleet")
    assert settings.archive_root({"FLEET_LAKE_DATA_PATH": "s3://bucket/fleet/lake/"}) == "s3://bucket/fleet/archive"
    assert settings.archive_root({"FLEET_LAKE_DATA_PATH": str(tmp_path / "lake")}) == str(tmp_path / "archive")
    # (The lake's own reader also says the lake variables need FLEET_WAREHOUSE=ducklake.)
    assert ("FLEET_LAKE_DATA_PATH 's3://bucket' has no parent folder to keep the raw archive beside it: give the "
            "lake's data a folder of its own, e.g. s3://bucket/lake") in settings.configuration_problems(
                {"FLEET_LAKE_DATA_PATH": "s3://bucket"})
    assert settings.configuration_problems({"FLEET_ARCHIVE_RETENTION_DAYS": "-1"}) == [
        "FLEET_ARCHIVE_RETENTION_DAYS must not be negative (0 keeps the archive forever), got -1"]
    assert settings.archive_retention_days({}) == settings.DEFAULT_ARCHIVE_RETENTION_DAYS == 120


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((*settings.VENDOR_ENV_PREFIXES, "FLEET_", "DAGSTER_"))}
    (tmp_path / "dagster_home").mkdir()
    return env | {"FLEET_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
                  "FLEET_SANDBOX_DEVICES": str(DEVICES), "FLEET_STEP_RETRIES": "0"}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "fleet-pipeline"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(1300)
def test_the_replay_command_rebuilds_a_wiped_table_and_names_a_day_it_cannot(tmp_path):
    env = _cli_env(tmp_path)
    day = WEEK[-1].isoformat()
    loaded = _cli(env, "backfill", "--start", day, "--end", day, "--no-reporting")
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
    warehouse = tmp_path / "data" / "sandbox.duckdb"
    assert (tmp_path / "data" / "archive" / "sandbox" / "navixy" / "track_points" / day).is_dir()
    before = _contents(warehouse)
    assert before["raw_navixy.track_points"].height > 0
    _wipe(warehouse, ["raw_navixy.track_points"])

    replayed = _cli(env, "replay", "--vendor", "navixy", "--from", day, "--to", day, "--table", "track_points")
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    assert f"[1/1] navixy track_points {day} from run " in replayed.stdout
    assert "no vendor is called" in replayed.stdout and "0 API calls" in replayed.stdout
    after = _contents(warehouse)
    assert all(after[table].equals(frame) for table, frame in before.items())

    earlier = (WEEK[-1] - timedelta(days=1)).isoformat()
    refused = _cli(env, "replay", "--vendor", "navixy", "--from", earlier, "--to", day)
    assert refused.returncode == 2
    assert f"navixy.track_points: no archive for {earlier}" in refused.stderr
    assert "Traceback" not in refused.stderr


def _tracksolid_client(sandbox, cache: Path) -> TracksolidClient:
    sandbox.knobs.set(rate_limit_calls=1_000_000)
    return TracksolidClient(sandbox.base_url, **tracksolid_protocol.CREDENTIALS, token_cache_dir=cache,
                            now=sandbox.clock, sleep=lambda s: None, max_calls_per_s=None)


def _one_device_window(world):
    """The World's Tracksolid root account, its first device, and a day's window before now."""
    root = world.root_account("tracksolid").account_id
    imei = world.devices_on("tracksolid", at=world.now())[0].imei
    return root, imei, world.now() - timedelta(days=2), world.now() - timedelta(days=1)


def test_the_session_records_accepted_answers_and_replays_them_by_call_and_parameters(tracksolid_sandbox, tmp_path):
    """The HTTP layer alone: answers recorded from the sandbox, served again to a client with an empty
    token cache (it asks for a token, as the replay of a step does) without a request; a call the
    recording does not hold fails, naming the vendor and the call."""
    world = tracksolid_sandbox.world
    root, imei, begin, end = _one_device_window(world)
    recorded = _tracksolid_client(tracksolid_sandbox, tmp_path / "cache")
    recorded.http.recorder = Recorder()
    devices, points = recorded.devices(root), recorded.track_points(imei, begin, end)
    assert devices and points
    sent = len(tracksolid_sandbox.server.requests())
    answers = list(recorded.http.recorder.take(recorded.http.secrets, recorded.http.volatile_fields))
    assert [a.call for a in answers] == ["jimi.oauth.token.get", "jimi.user.device.list", "jimi.device.track.list"]
    archive = Archive(str(tmp_path / "archive"))
    archive.write("tracksolid", "track_points", [begin.date()], "run-1", world.now(), answers)

    replayed = _tracksolid_client(tracksolid_sandbox, tmp_path / "empty-cache")
    replayed.http.replay = ArchiveReplay(archive, "tracksolid", "run-1")
    assert replayed.devices(root) == devices
    assert replayed.track_points(imei, begin, end) == points
    assert len(tracksolid_sandbox.server.requests()) == sent
    with pytest.raises(VendorAPIError, match=r"tracksolid jimi.device.track.list.*replay: no archived answer"):
        replayed.track_points(imei, begin - timedelta(days=1), end)
    assert len(tracksolid_sandbox.server.requests()) == sent


def test_two_accounts_of_one_run_archive_and_replay_their_own_answers(tracksolid_sandbox, tmp_path):
    """Two accounts' steps of one run load the same table and day: each archive file is kept (the
    second does not overwrite the first), a replay of one account is served that account's answers
    alone (their redacted requests can be the same), and the replay plan has one run per account."""
    world = tracksolid_sandbox.world
    root, imei, begin, end = _one_device_window(world)
    # One client (the sandbox gives a token once a minute) recording each account's calls in turn.
    client = _tracksolid_client(tracksolid_sandbox, tmp_path / "cache")
    client.http.recorder = Recorder()
    archive = Archive(str(tmp_path / "archive"))
    devices = client.devices(root)
    archive.write("tracksolid", "track_points", [begin.date()], "run-1", world.now(),
                  client.http.recorder.take(client.http.secrets, client.http.volatile_fields))
    points = client.track_points(imei, begin, end)
    lyon = archive.write("tracksolid", "track_points", [begin.date()], "run-1", world.now(),
                         client.http.recorder.take(client.http.secrets, client.http.volatile_fields), "lyon")
    assert Path(lyon.path).parent.name == "lyon"
    assert sorted(step.account for step in archive.steps("tracksolid", "track_points")) == ["default", "lyon"]
    assert [step.account for step in archive.steps("tracksolid", account="lyon")] == ["lyon"]

    sent = len(tracksolid_sandbox.server.requests())
    as_lyon = _tracksolid_client(tracksolid_sandbox, tmp_path / "cache")  # its token cached, as when recorded
    as_lyon.http.replay = ArchiveReplay(archive, "tracksolid", "run-1", "lyon")
    assert as_lyon.track_points(imei, begin, end) == points
    as_default = _tracksolid_client(tracksolid_sandbox, tmp_path / "empty-default")
    as_default.http.replay = ArchiveReplay(archive, "tracksolid", "run-1")
    assert as_default.devices(root) == devices
    with pytest.raises(VendorAPIError, match=r"tracksolid jimi.device.track.list.*replay: no archived answer"):
        as_default.track_points(imei, begin, end)
    assert len(tracksolid_sandbox.server.requests()) == sent

    runs = plan_replay(archive, "tracksolid", begin.date(), begin.date(), vendor_tables("tracksolid"), "track_points")
    assert sorted((run.account, run.run_id, run.tables) for run in runs) == [
        ("default", "run-1", ("track_points",)), ("lyon", "run-1", ("track_points",))]


def test_a_step_whose_answers_cannot_be_archived_swaps_nothing(tmp_path, monkeypatch):
    """The archive is written before the swap: when it cannot be, the partition is left as it was."""
    def unwritable(*args, **kwargs):
        raise OSError("the archive's disk is full")

    swaps = []
    monkeypatch.setattr(Archive, "write", unwritable)
    monkeypatch.setattr(source_assets, "write_batch", lambda conn, batch: swaps.append(batch.table))
    resources = {key: value for key, value in _resources(tmp_path).items() if key in ("duckdb", "tracksolid")}
    alarms = [asset for asset in tracksolid_assets.tracksolid_assets if asset.key.path[-1] == "alarms"]
    result = materialize(alarms, partition_key=WEEK[-1].isoformat(), resources=resources,
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    assert swaps == []
    assert not (tmp_path / "warehouse.duckdb").exists()


# Run in a fresh interpreter: what a step process of the code location loads to archive and replay.
_ARCHIVE_WITHOUT_PYARROW = """
import sys
from datetime import date, datetime
import fleet_pipeline.definitions
from fleet_pipeline.ingest.archive import Archive, ArchiveReplay
from fleet_pipeline.ingest.http.recording import Answer

answers = [Answer("track/read", "POST", "/track/read", '{"tracker_id": %d}' % n, 200, "x" * 100_000 + str(n),
                  datetime(2026, 11, 30, 12, n // 60, n % 60)) for n in range(150)]
archive = Archive(sys.argv[1])
step = archive.write("navixy", "track_points", [date(2026, 11, 30)], "run-1", datetime(2026, 11, 30, 13), iter(answers))
read = archive.read(step.path)
assert read.answers == answers and read.extracted_at == datetime(2026, 11, 30, 13), "answers changed on the way"
assert [s.run_id for s in archive.steps("navixy")] == ["run-1"]
print("pyarrow" in sys.modules, step.size)
"""


def test_a_local_archive_is_written_and_read_without_pyarrow_in_row_groups(tmp_path):
    """A step process writing its answers to a local archive does not load pyarrow (~40 MiB); the
    answers come back exactly, and 15 MB of bodies are written as several row groups, not one."""
    done = subprocess.run([sys.executable, "-c", _ARCHIVE_WITHOUT_PYARROW, str(tmp_path / "archive")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded, size = done.stdout.split()
    assert loaded == "False", "pyarrow was imported to write or read a local archive"
    [path] = (tmp_path / "archive").rglob("*.parquet")
    assert int(size) == path.stat().st_size
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 150 and metadata.num_row_groups > 1
    assert not [p for p in (tmp_path / "archive").rglob("*") if p.name.startswith(".")], "a scratch file was left"
