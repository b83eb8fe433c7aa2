"""What a person reading the Dagster UI relies on: every asset of the code location is described,
owned, grouped and kinded, every table declares its columns, and a source's materialization records
counts, rejects, API usage, waits, duration, the column schema and a preview — without a secret."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, TableSchema, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import teltonika as sandbox_teltonika
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.teltonika import assets as teltonika_assets
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource

COLUMN_SCHEMA = "dagster/column_schema"


@pytest.fixture(scope="module")
def defs() -> Definitions:
    from fleet_pipeline.definitions import defs as project_defs  # seconds: every source and the dbt models

    return project_defs


@pytest.fixture(scope="module")
def nodes(defs: Definitions) -> dict[AssetKey, object]:
    graph = defs.resolve_asset_graph()
    return {key: graph.get(key) for key in graph.materializable_asset_keys}


def _is_table(key: AssetKey) -> bool:
    """Tables are keyed <schema>/<table> (raw_<vendor>, staging, core, marts); the serving copy
    (a database file) and the report (an HTML page) are single-part keys."""
    return len(key.path) == 2


def _source_keys() -> set[AssetKey]:
    from fleet_pipeline.definitions import source_assets

    return {key for definition in source_assets for key in definition.keys}


def test_every_asset_is_described_owned_grouped_and_kinded(nodes):
    offenders = {}
    for key, node in nodes.items():
        missing = [
            name for name, present in (
                ("description", bool((node.description or "").strip())),
                ("owners", bool(node.owners)),
                ("group", node.group_name not in (None, "default")),
                ("kinds", bool(node.kinds)),
            ) if not present
        ]
        if missing:
            offenders[key.to_user_string()] = missing
    assert len(nodes) > 40
    assert not offenders, f"assets missing what the UI shows: {offenders}"


def test_every_model_table_declares_its_columns(nodes):
    models = {key: node for key, node in nodes.items() if _is_table(key) and key not in _source_keys()}
    offenders = sorted(key.to_user_string() for key, node in models.items()
                       if not isinstance(node.metadata.get(COLUMN_SCHEMA), TableSchema)
                       or not node.metadata[COLUMN_SCHEMA].columns)
    assert models and not offenders, f"dbt tables without a column schema: {offenders}"


def test_every_source_table_declares_its_columns(nodes):
    offenders = sorted(key.to_user_string() for key in _source_keys()
                       if COLUMN_SCHEMA not in nodes[key].metadata)
    assert not offenders, f"source tables without a declared column schema: {offenders}"


def test_every_column_says_what_it_holds(nodes):
    # The catalog is where the data team reads a table's columns: raw columns included.
    offenders = sorted(f"{key.to_user_string()}.{column.name}" for key, node in nodes.items()
                       if isinstance(node.metadata.get(COLUMN_SCHEMA), TableSchema)
                       for column in node.metadata[COLUMN_SCHEMA].columns
                       if not (column.description or "").strip())
    assert not offenders, f"columns without a description: {offenders}"


def test_dbt_descriptions_are_prose_not_sql(nodes):
    offenders = sorted(key.to_user_string() for key, node in nodes.items()
                       if "Raw SQL" in (node.description or "") or "{{" in (node.description or ""))
    assert not offenders, f"descriptions with dbt's raw SQL appended: {offenders}"
    unserializable = sorted(f"{key.to_user_string()}: {name}" for key, node in nodes.items()
                            for name in node.metadata if name == "dagster_dbt/project")
    assert not unserializable, f"metadata the UI can only show as '(unserializable)': {unserializable}"


def test_a_source_materialization_records_what_a_reader_needs(tmp_path):
    world = World(seed=42, n_devices=8)
    with sandbox_teltonika.make_server(world) as server:
        resources = {
            "teltonika": TeltonikaResource(base_url=server.base_url, api_token=sandbox_teltonika.API_TOKEN,
                                           cache_dir=str(tmp_path / "cache")),
            "duckdb": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        }
        result = materialize([teltonika_assets.groups], resources=resources, instance=DagsterInstance.ephemeral())
    assert result.success

    [event] = result.get_asset_materialization_events()
    metadata = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    expected = {"dagster/row_count", COLUMN_SCHEMA, "rows_before", "rows_added", "rejected_rows", "api_calls",
                "api_retries", "throttle_wait_s_summed_over_calls",
                "backoff_wait_s_summed_over_calls", "duration_s", "preview",
                "warehouse_wait_s", "warehouse_held_s", "warehouse_held_from", "warehouse_held_until"}
    assert expected <= set(metadata), f"missing: {sorted(expected - set(metadata))}"
    assert metadata["dagster/row_count"] > 0 and metadata["api_calls"] >= 1
    columns = {column.name: column.description for column in metadata[COLUMN_SCHEMA].columns}
    assert {"snapshot_date", "snapshot_at"} <= set(columns)
    assert all(columns.values()), f"the materialization's columns lost their descriptions: {columns}"
    assert [c.check_name for c in result.get_asset_check_evaluations()] == ["no_rejected_rows",
                                                                            "rows_where_the_fleet_has_devices"]

    # Nothing a reader sees — log lines, metadata — holds the vendor token.
    texts = [str(e.message) for e in result.all_events] + [str(v) for v in metadata.values()]
    assert not [text for text in texts if sandbox_teltonika.API_TOKEN in text]


def test_source_jobs_run_every_vendor_at_once_and_one_step_per_vendor(defs):
    # The vendors' steps run side by side (each holds the warehouse for its write alone); a vendor's
    # own steps share its rate limit, so they run one at a time.
    from fleet_pipeline.definitions import source_assets
    from fleet_pipeline.ingest.source_assets import VENDOR_TAG

    for definition in source_assets:
        node = definition.node_def
        assert node.pool is None, f"{node.name} holds a pool for its whole step"
        assert node.tags.get(VENDOR_TAG) == definition.group_names_by_key[definition.key], node.name
    for name in ("all_daily", "all_snapshots", "tracksolid_daily", "tracksolid_snapshots", "navixy_daily",
                 "navixy_snapshots"):
        executor = defs.resolve_job_def(name).executor_def
        config = executor.config_schema.resolve_config({}).value["config"]
        assert config["max_concurrent"] >= 5, name  # five vendors
        assert config["tag_concurrency_limits"] == [
            {"key": VENDOR_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}], name
