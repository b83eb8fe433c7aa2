"""Several accounts per vendor (FLEET_ACCOUNTS_FILE): three Navixy accounts and two Tracksolid accounts
extracted in one run against the sandboxes over real HTTP into one DuckDB file.

Each Navixy account is an API key of the sandbox that reaches one World account's devices; the two
Tracksolid accounts share one user and target two sub-accounts of the World's tree. The expected
devices and kilometres come from the World, account by account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from fleet_pipeline import settings
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource, replace_partitions
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.registry import BY_NAME
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource
from fleet_pipeline_tests.run_results import query as _query

# Navixy account of the file -> the World account its key reaches (disjoint fleets: 20, 3 and 4
# devices in a World of 60).
NAVIXY_ACCOUNTS = {"lyon_hq": "fleetco-nvx", "oullins": "fleetco-nvx-oullins",
                   "oullins_rental": "fleetco-nvx-oullins-rental"}
# Tracksolid account of the file -> the sub-account it targets (its devices and its sub-accounts').
TRACKSOLID_ACCOUNTS = {"caluire": "fleetco-caluire", "vaulx": "fleetco-vaulx"}
PARIS = ZoneInfo(sandbox_navixy.USER_TIME_ZONE)


@pytest.fixture(scope="module")
def accounts_world() -> World:
    return World(seed=42, n_devices=60)


@pytest.fixture
def servers(accounts_world: World) -> Iterator[tuple]:
    with sandbox_navixy.make_server(accounts_world) as navixy, sandbox_tracksolid.make_server(accounts_world) as ts:
        yield navixy, ts


def _accounts_file(path: Path, navixy_url: str, tracksolid_url: str) -> Path:
    blocks = [
        f'[[navixy]]\nname = "{name}"\nsettings = {{ NAVIXY_BASE_URL = "{navixy_url}" }}\n'
        f'credentials = {{ NAVIXY_API_KEY = "TEST_NAVIXY_KEY_{name.upper()}" }}\n'
        for name in NAVIXY_ACCOUNTS
    ] + [
        f'[[tracksolid]]\nname = "{name}"\n'
        f'settings = {{ TRACKSOLID_BASE_URL = "{tracksolid_url}", TRACKSOLID_TARGET_ACCOUNT = "{target}" }}\n'
        'credentials = { TRACKSOLID_APP_KEY = "TEST_TS_APP_KEY", TRACKSOLID_APP_SECRET = "TEST_TS_APP_SECRET", '
        'TRACKSOLID_USER_ID = "TEST_TS_USER", TRACKSOLID_USER_PASSWORD = "TEST_TS_PASSWORD" }\n'
        for name, target in TRACKSOLID_ACCOUNTS.items()
    ]
    path.write_text("\n".join(blocks))
    return path


@pytest.fixture
def configured(servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    navixy, tracksolid = servers
    accounts_file = _accounts_file(tmp_path / "accounts.toml", navixy.base_url + sandbox_navixy.API_PREFIX,
                                   tracksolid.base_url + sandbox_tracksolid.ROUTE_PATH)
    monkeypatch.setenv("FLEET_ACCOUNTS_FILE", str(accounts_file))
    for name, world_account in NAVIXY_ACCOUNTS.items():
        monkeypatch.setenv(f"TEST_NAVIXY_KEY_{name.upper()}", sandbox_navixy.account_api_key(world_account))
    for variable, value in (("TEST_TS_APP_KEY", sandbox_tracksolid.APP_KEY),
                            ("TEST_TS_APP_SECRET", sandbox_tracksolid.APP_SECRET),
                            ("TEST_TS_USER", sandbox_tracksolid.USER_ID),
                            ("TEST_TS_PASSWORD", sandbox_tracksolid.USER_PASSWORD)):
        monkeypatch.setenv(variable, value)
    settings.check_configuration()
    common = dict(live_mode=True, cache_dir=str(tmp_path / "cache"), retry_attempts=3, backoff_base_s=0.05)
    return {
        "navixy": NavixyResource(file_accounts=list(NAVIXY_ACCOUNTS), **common),
        "tracksolid": TracksolidResource(file_accounts=list(TRACKSOLID_ACCOUNTS), token_get_interval_s=0.0,
                                         **common),
        "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
    }


def _assets(vendor: str, tables: set[str]) -> list:
    return [a for a in BY_NAME[vendor].load_assets() if a.key.path[-1] in tables]


def _run(assets: list, resources: dict, day: date | None = None):
    result = materialize(assets, partition_key=day.isoformat() if day else None, resources=resources,
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failures = [e.message for e in result.all_events if e.is_failure]
    assert result.success, failures
    return result


def _check_metadata(result, asset: str, check: str) -> dict:
    for event in result.all_events:
        evaluation = event.event_specific_data
        if (event.event_type_value == "ASSET_CHECK_EVALUATION" and evaluation.check_name == check
                and evaluation.asset_key.to_user_string() == asset):
            return {key: getattr(value, "value", value) for key, value in evaluation.metadata.items()}
    raise AssertionError(f"no {check} evaluation of {asset}")


def _navixy_devices(world: World, world_account: str) -> dict[str, object]:
    """IMEI -> device of the account's trackers the sandbox lists now (activated, not deleted)."""
    deleted = sandbox_navixy.default_deleted_tracker_ids(world)
    return {d.imei: d for d in world.devices_of_account(world_account, at=world.now())
            if sandbox_navixy.tracker_id(d) not in deleted}


def _subtree_imeis(world: World, account_id: str) -> set[str]:
    imeis = {d.imei for d in world.devices_of_account(account_id, at=world.now())}
    for child in world.child_accounts(account_id):
        imeis |= _subtree_imeis(world, child.account_id)
    return imeis


def _local_day_km(world: World, imei: str, day: date) -> float:
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS)
    bounds = [(start + timedelta(days=n)).astimezone(timezone.utc).replace(tzinfo=None) for n in (0, 1)]
    return world.odometer_km(imei, bounds[1]) - world.odometer_km(imei, bounds[0])


def test_every_account_extracted_as_its_own_asset(configured) -> None:
    navixy = BY_NAME["navixy"]
    assets = navixy.load_assets()
    keys = {a.key.to_user_string() for a in assets}
    assert len(assets) == 7 * len(NAVIXY_ACCOUNTS)
    assert {f"raw_navixy/{account}/trackers" for account in NAVIXY_ACCOUNTS} <= keys
    # Each account's steps are limited on their own (one at a time per account), not the vendor's.
    tags = {a.op.tags["fleet/vendor"] for a in assets}
    assert tags == {f"navixy:{account}" for account in NAVIXY_ACCOUNTS}
    # The table's own asset is what the dbt models read: every account's asset feeds it.
    (trackers_table,) = [s for s in navixy.table_specs() if s.key.path == ["raw_navixy", "trackers"]]
    assert {dep.asset_key.path[1] for dep in trackers_table.deps} == set(NAVIXY_ACCOUNTS)


def test_three_navixy_and_two_tracksolid_accounts_in_one_run(configured, accounts_world: World) -> None:
    world = accounts_world
    day = (world.now() - timedelta(days=5)).date()
    navixy_snapshots = _assets("navixy", {"trackers"})
    navixy_days = _assets("navixy", {"track_points", "mileage_daily"})
    tracksolid_snapshots = _assets("tracksolid", {"devices"})
    _run([*navixy_snapshots, *tracksolid_snapshots], configured)
    loaded_days = _run(navixy_days, configured, day)

    blocked = sandbox_navixy.default_blocked_tracker_ids(world)
    for account, world_account in NAVIXY_ACCOUNTS.items():
        expected = _navixy_devices(world, world_account)
        assert expected, f"the World account {world_account} has no Navixy device"
        trackers = {imei for (imei,) in _query(configured, "select imei from raw_navixy.trackers where account = ?",
                                                [account])}
        assert trackers == set(expected), account
        points = _query(configured, "select distinct imei from raw_navixy.track_points where account = ?", [account])
        assert points and {imei for (imei,) in points} <= set(expected), account
        mileage = dict(_query(configured, "select imei, mileage_km from raw_navixy.mileage_daily "
                                          "where account = ? and partition_date = ?", [account, day]))
        active = {imei: d for imei, d in expected.items() if sandbox_navixy.tracker_id(d) not in blocked}
        assert set(mileage) == set(active), account
        for imei in active:
            assert mileage[imei] == pytest.approx(_local_day_km(world, imei, day), rel=0.02, abs=0.02), imei
        # The account's asset is judged against the account's own devices, not the vendor's.
        checked = _check_metadata(loaded_days, f"raw_navixy/{account}/mileage_daily", "rows_where_the_fleet_has_devices")
        assert checked["fleet_devices"] == len(active), account

    for account, target in TRACKSOLID_ACCOUNTS.items():
        devices = {imei for (imei,) in _query(configured, "select imei from raw_tracksolid.devices where account = ?",
                                               [account])}
        assert devices == _subtree_imeis(world, target), account
    for schema in ("raw_navixy", "raw_tracksolid"):
        tables = [t for (t,) in _query(configured, "select table_name from information_schema.tables "
                                                   "where table_schema = ?", [schema])]
        for table in tables:
            assert _query(configured, f'select count(*) from {schema}."{table}" where account is null') == [(0,)]


def test_two_accounts_loading_the_same_day_keep_each_others_rows(configured, accounts_world: World) -> None:
    day = (accounts_world.now() - timedelta(days=5)).date()
    mileage = {a.key.path[1]: a for a in _assets("navixy", {"mileage_daily"})}

    def rows_by_account() -> dict[str, int]:
        return dict(_query(configured, "select account, count(*) from raw_navixy.mileage_daily "
                                       "where partition_date = ? group by 1", [day]))

    _run([mileage["oullins"]], configured, day)
    alone = rows_by_account()
    _run([mileage["oullins_rental"]], configured, day)
    both = rows_by_account()
    _run([mileage["oullins"]], configured, day)  # a re-run replaces its own rows only
    assert set(alone) == {"oullins"} and alone["oullins"] > 0
    assert both["oullins"] == alone["oullins"] and both["oullins_rental"] > 0
    assert rows_by_account() == both


def test_replacing_one_accounts_partition_leaves_the_other_accounts(tmp_path: Path) -> None:
    table = TableRef("raw_test", "readings")
    day = date(2026, 11, 16)

    def batch(account: str, values: list[float]) -> pl.DataFrame:
        return pl.DataFrame({"imei": [f"{account}-{n}" for n in range(len(values))], "value": values,
                             "partition_date": [day] * len(values), "account": [account] * len(values)})

    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        replace_partitions(conn, table, batch("eu", [1.0, 2.0]), "partition_date", [day], account="eu")
        replace_partitions(conn, table, batch("us", [3.0]), "partition_date", [day], account="us")
        written = replace_partitions(conn, table, batch("eu", [5.0]), "partition_date", [day], account="eu")
        assert written[day].rows_before == 2
        assert conn.execute(f"select account, sum(value) from {table.sql} group by 1 order by 1").fetchall() == [
            ("eu", 5.0), ("us", 3.0)]


@pytest.mark.parametrize(("content", "extra_env", "expected", "secret"), [
    ('[[navixi]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "K" }\n', {},
     "FLEET_ACCOUNTS_FILE: unknown vendor 'navixi'", None),
    ('[[navixy]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "K1" }\n'
     '[[navixy]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "K2" }\n', {"K1": "a", "K2": "b"},
     "navixy has more than one account named 'eu'", None),
    ('[[navixy]]\nname = "default"\ncredentials = { NAVIXY_API_KEY = "K1" }\n', {"K1": "a", "NAVIXY_API_KEY": "b"},
     "navixy has more than one account named 'default'", None),
    ('[[navixy]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "FLEET_NAVIXY_EU_KEY" }\n', {},
     "FLEET_ACCOUNTS_FILE: navixy account 'eu': FLEET_NAVIXY_EU_KEY (its NAVIXY_API_KEY) is not set", None),
    ('[[navixy]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "s3cr3t-key value!" }\n', {},
     "credentials.NAVIXY_API_KEY must be the name of an environment variable", "s3cr3t-key value!"),
    ('[[navixy]]\nname = "eu"\nsettings = { NAVIXY_API_KEY = "s3cr3t" }\n', {},
     "NAVIXY_API_KEY is a credential", "s3cr3t"),
    ('[[navixy]]\nname = "eu"\nsettings = { NAVIXY_BASE_URL = "ftp://x" }\n'
     'credentials = { NAVIXY_API_KEY = "K1" }\n', {"K1": "the-secret-value"},
     "navixy account 'eu': NAVIXY_BASE_URL must start with http", "the-secret-value"),
    ('[[navixy]]\nname = "EU West"\ncredentials = { NAVIXY_API_KEY = "K1" }\n', {},
     "navixy account #1: name must be", None),
    ('[[navixy]\nname = "eu"\n', {}, "is not valid TOML", None),
])
def test_a_bad_accounts_file_is_one_clear_error(tmp_path: Path, content: str, extra_env: dict, expected: str,
                                                secret: str | None) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(content)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("NAVIXY_", "TRACKSOLID_"))},
           "FLEET_ACCOUNTS_FILE": str(path), **extra_env}
    problems = settings.configuration_problems(env)
    assert any(expected in problem for problem in problems), problems
    if secret is not None:
        assert not any(secret in problem for problem in problems)


def test_a_missing_accounts_file_is_named(tmp_path: Path) -> None:
    problems = settings.configuration_problems({"FLEET_ACCOUNTS_FILE": str(tmp_path / "nowhere.toml")})
    assert problems == [f"FLEET_ACCOUNTS_FILE names {str(tmp_path / 'nowhere.toml')!r}, which does not exist"]


def test_without_a_file_every_vendor_has_the_one_default_account() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEET_ACCOUNTS_FILE"}
    from fleet_pipeline.sources.accounts import account_names

    assert {name: account_names(spec, env) for name, spec in BY_NAME.items()} == {
        name: ["default"] for name in BY_NAME}


def test_the_vendors_own_variables_are_one_more_account_named_default(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "accounts.toml").write_text('[[navixy]]\nname = "eu"\ncredentials = { NAVIXY_API_KEY = "TEST_EU_KEY" }\n')
    monkeypatch.setenv("FLEET_ACCOUNTS_FILE", str(tmp_path / "accounts.toml"))
    monkeypatch.setenv("TEST_EU_KEY", "eu-key")
    monkeypatch.setenv("NAVIXY_API_KEY", "default-key")
    navixy = BY_NAME["navixy"]
    assert navixy.accounts() == ["default", "eu"]
    keys = [a.key.to_user_string() for a in navixy.load_assets()]
    tables = [s.key.to_user_string() for s in navixy.table_specs()]
    assert "raw_navixy/default/trackers" in keys and "raw_navixy/eu/trackers" in keys
    assert "raw_navixy/trackers" in tables and not set(keys) & set(tables)
    resource = NavixyResource.from_env()
    # The default account is the resource itself; "eu" is a copy with its own key, read now.
    assert resource.for_account("default") is resource
    assert resource.for_account("eu").api_key == "eu-key"


def test_the_configuration_report_lists_every_account_with_its_secrets_masked(configured,
                                                                               capsys: pytest.CaptureFixture) -> None:
    from fleet_pipeline import cli

    assert cli.show_config() == 0
    report = capsys.readouterr().out
    for account in NAVIXY_ACCOUNTS:
        assert f"navixy {account}:" in report
    for account in TRACKSOLID_ACCOUNTS:
        assert f"tracksolid {account}:" in report
    assert sandbox_navixy.API_KEY not in report and sandbox_tracksolid.APP_SECRET not in report
    # Vendors read through accounts alone have no "not configured" line.
    assert not any(line.startswith(("navixy:", "tracksolid:")) for line in report.splitlines())
