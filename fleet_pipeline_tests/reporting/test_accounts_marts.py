"""The marts are the same whether a vendor's fleet is read through one account or split over several.

Two warehouses of the same World and day: in one, Navixy is read with the sandbox's key for the whole
fleet (the account ``default``); in the other, with one API key per World account (five accounts of
FLEET_ACCOUNTS_FILE that together own the Navixy fleet). Every other vendor is the embedded sandbox
in both. After `dbt build` (its tests included), every mart holds the same rows but for its
``account`` column, and that column names, device by device, the account the World puts the
device in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.registry import BY_NAME, VENDORS
from fleet_pipeline.sources.tracksolid.push_assets import PushLandingResource, push_assets
from fleet_pipeline_tests.reporting.test_dbt_models import run_dbt

SEED, N_DEVICES = 42, 60
PER_DEVICE_MARTS = ("mileage_daily", "alarms_daily", "parking_events", "parking_daily", "utilisation_daily",
                    "speeding_daily", "device_health_daily")
# mart -> the columns that may differ: the account, and when the stock snapshot was taken.
COMPARED_WITHOUT = {**{mart: "account" for mart in PER_DEVICE_MARTS}, "firmware_rollout": None,
                    "stock_daily": "snapshot_at"}

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=SEED, n_devices=N_DEVICES)


@pytest.fixture(scope="module")
def navixy_server(world: World) -> Iterator:
    with sandbox_navixy.make_server(world) as server:
        yield server


def _account_name(world_account: str) -> str:
    return world_account.replace("-", "_")


def _load(tmp: Path, navixy: NavixyResource, navixy_assets: list, day) -> Path:
    db = tmp / "warehouse.duckdb"
    common = dict(cache_dir=str(tmp / "cache"), retry_attempts=3, backoff_base_s=0.05,
                  sandbox_seed=SEED, sandbox_devices=N_DEVICES)
    resources = {spec.resource_key: spec.resource_class()(**common) for spec in VENDORS if spec.name != "navixy"}
    # The push tables the dbt models read, from a landing folder nothing was pushed to.
    resources.update(navixy=navixy, duckdb=WarehouseResource(database=str(db)),
                     tracksolid_push=PushLandingResource(landing_dir=str(tmp / "push_landing")))
    assets = [a for spec in VENDORS if spec.name != "navixy" for a in spec.load_assets()] + navixy_assets + push_assets
    for selection, partition in (([a for a in assets if a.partitions_def is None], None),
                                 ([a for a in assets if a.partitions_def is not None], day.isoformat())):
        result = materialize(selection, partition_key=partition, resources=resources,
                             instance=DagsterInstance.ephemeral(), raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    run_dbt(tmp, db, "build")
    return db


def _marts(db: Path) -> dict[str, list[tuple]]:
    """Every mart's rows (without ``account``); sums of floats are rounded to a micrometre or so,
    since the order rows are summed in (DuckDB's, not the data's) moves their last digits."""
    def rows(sql: str) -> list[tuple]:
        return [tuple(round(v, 6) if isinstance(v, float) else v for v in row)
                for row in conn.execute(sql + " order by all").fetchall()]

    with duckdb.connect(str(db), read_only=True) as conn:
        return {mart: rows(f"select * exclude ({left_out}) from marts.{mart}" if left_out
                           else f"select * from marts.{mart}")
                for mart, left_out in COMPARED_WITHOUT.items()}


def test_marts_are_the_same_across_accounts(world: World, navixy_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    day = (world.now() - timedelta(days=5)).date()
    url = navixy_server.base_url + sandbox_navixy.API_PREFIX
    common = dict(live_mode=True, retry_attempts=3, backoff_base_s=0.05)

    one_account = _load(tmp_path / "one", NavixyResource(base_url=url, api_key=sandbox_navixy.API_KEY,
                                                        cache_dir=str(tmp_path / "one" / "cache"), **common),
                        BY_NAME["navixy"].load_assets(), day)

    world_accounts = [a.account_id for a in world.accounts if a.platform == "navixy"]
    blocks = []
    for world_account in world_accounts:
        variable = f"TEST_NAVIXY_KEY_{_account_name(world_account).upper()}"
        monkeypatch.setenv(variable, sandbox_navixy.account_api_key(world_account))
        blocks.append(f'[[navixy]]\nname = "{_account_name(world_account)}"\n'
                      f'settings = {{ NAVIXY_BASE_URL = "{url}" }}\ncredentials = {{ NAVIXY_API_KEY = "{variable}" }}\n')
    (tmp_path / "accounts.toml").write_text("\n".join(blocks))
    monkeypatch.setenv("FLEET_ACCOUNTS_FILE", str(tmp_path / "accounts.toml"))
    names = [_account_name(a) for a in world_accounts]
    several = _load(tmp_path / "several",
                    NavixyResource(file_accounts=names, cache_dir=str(tmp_path / "several" / "cache"), **common),
                    BY_NAME["navixy"].load_assets(), day)

    one, split = _marts(one_account), _marts(several)
    assert one["mileage_daily"] and one["parking_daily"]
    for mart in COMPARED_WITHOUT:
        assert split[mart] == one[mart], mart

    account_of = {d.imei: _account_name(d.account_id) for d in world.devices_on("navixy")}
    with duckdb.connect(str(several), read_only=True) as conn:
        for mart in PER_DEVICE_MARTS:
            rows = conn.execute(f"select distinct imei, platform, account from marts.{mart}").fetchall()
            assert rows, mart
            for imei, platform, account in rows:
                assert account == (account_of[imei] if platform == "navixy" else "default"), (mart, imei)
    with duckdb.connect(str(one_account), read_only=True) as conn:
        assert conn.execute("select distinct account from marts.mileage_daily").fetchall() == [("default",)]
