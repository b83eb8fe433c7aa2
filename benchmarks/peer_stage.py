"""One stage of the peer comparison in a fresh process: the project in one process, dlt, or the floor.

    python -m benchmarks.peer_stage SPEC OUT

``kind`` in the spec file:

* ``one_process``: the project's Navixy day the way the benchmark and the demo run it,
  ``dagster.materialize`` in this process (in-process executor, ephemeral instance): the trackers
  snapshot, then the day of trips, track points and events, with :mod:`benchmarks.memory_phases`
  recording where the memory peaks;
* ``dlt``: the same day loaded by dlt (:mod:`benchmarks.peer_dlt`);
* ``bare``: the floor, the project's rows of those tables (read from the one-process stage's
  warehouse before the clock starts) written by a plain Arrow ``CREATE TABLE AS`` into a fresh file.

Each reports its wall time, its CPU (own and children's) and its peak RSS (VmHWM of the process;
for ``one_process`` the largest reading of the memory phases, which reset the high-water mark).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()

from benchmarks.stage import QUIET_RUN_CONFIG, _first_error, _materialized, _usage, _vendor_resource  # noqa: E402

NAVIXY_ASSETS = "fleet_pipeline.sources.navixy.assets"
RAW_SCHEMA = "raw_navixy"
# What issue 17 compares: the trackers snapshot and the day's event tables.
SNAPSHOT_TABLES = ("trackers",)
DAY_TABLES = ("trips", "track_points", "events")
TABLES = (*SNAPSHOT_TABLES, *DAY_TABLES)


def count_rows(database: str, schema: str, tables: dict[str, str]) -> dict[str, int | None]:
    """Rows of ``schema.<name>`` for each name of ``tables``, keyed by ``tables[name]`` (the name
    the comparison uses); ``None`` for a table the file does not hold."""
    import duckdb

    with duckdb.connect(database, read_only=True) as conn:
        existing = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]).fetchall()}
        return {compared: (conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
                           if name in existing else None)
                for name, compared in tables.items()}


def run_one_process(spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from benchmarks.memory_phases import MemoryPhases

    phases = MemoryPhases()
    module = importlib.import_module(NAVIXY_ASSETS)
    schemas = importlib.import_module("fleet_pipeline.sources.navixy.schemas")
    by_columns = {id(getattr(schemas, f"{singular.upper()}_COLUMNS")): table
                  for table, singular in (("trackers", "tracker"), ("trips", "trip"),
                                          ("track_points", "track_point"), ("events", "event"))}
    phases.install(NAVIXY_ASSETS, lambda columns: by_columns.get(id(columns)))

    from dagster import DagsterInstance, materialize

    from fleet_pipeline.ingest.warehouse import WarehouseResource

    by_name = {a.key.path[-1]: a for a in module.navixy_assets}
    resources = {"navixy": _vendor_resource("navixy", spec["base_url"], spec["cache_dir"]),
                 "duckdb": WarehouseResource(database=spec["warehouse"])}
    phases.boundary("extract", "(imports and set-up)")
    before, started = _usage(), time.perf_counter()
    runs = []
    for tables, partition in ((SNAPSHOT_TABLES, None), (DAY_TABLES, spec["day"])):
        result = materialize([by_name[t] for t in tables], partition_key=partition, resources=resources,
                             instance=DagsterInstance.ephemeral(), raise_on_error=False,
                             run_config=QUIET_RUN_CONFIG)
        runs.append({"success": result.success, "error": _first_error(result), "assets": _materialized(result)})
    wall = time.perf_counter() - started
    after = _usage()
    memory = phases.as_dict()
    after["peak_rss_mib"] = memory["peak_mib"]
    return {"wall_s": round(wall, 3), "usage_before": before, "usage_after": after,
            "success": all(r["success"] for r in runs), "errors": [r["error"] for r in runs if r["error"]],
            "assets": {k: v for r in runs for k, v in r["assets"].items()}, "memory": memory,
            "rows": count_rows(spec["warehouse"], RAW_SCHEMA, {t: t for t in TABLES})}


def run_dlt(spec: dict[str, Any]) -> dict[str, Any]:
    from datetime import date

    from benchmarks import peer_dlt

    before, started = _usage(), time.perf_counter()
    try:
        loaded = peer_dlt.run(spec["base_url"], spec["api_key"], date.fromisoformat(spec["day"]),
                              spec["warehouse"], spec["pipelines_dir"], spec["workers"])
        error = None
    except Exception as failure:  # reported in the table, the other stages still count
        loaded, error = {}, f"{type(failure).__name__}: {str(failure)[-1500:]}"
    wall = time.perf_counter() - started
    after = _usage()
    rows = count_rows(spec["warehouse"], "navixy", peer_dlt.TABLES) if Path(spec["warehouse"]).exists() else {}
    return {"wall_s": round(wall, 3), "usage_before": before, "usage_after": after, "success": error is None,
            "errors": [error] if error else [], "rows": rows, "workers": spec["workers"],
            "load_packages": loaded.get("load_packages")}


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The same rows, typed as the project typed them, inserted with no transaction bookkeeping,
    no delete, no rejects and no validation: what writing them costs at the least."""
    import duckdb

    with duckdb.connect(spec["source_warehouse"], read_only=True) as source:
        arrow = {t: source.execute(f'SELECT * FROM "{RAW_SCHEMA}"."{t}"').fetch_arrow_table() for t in TABLES}
    before, started = _usage(), time.perf_counter()
    with duckdb.connect(spec["warehouse"]) as conn:
        for table, data in arrow.items():
            conn.register("incoming", data)
            conn.execute(f'CREATE TABLE "{table}" AS SELECT * FROM incoming')
            conn.unregister("incoming")
    wall = time.perf_counter() - started
    after = _usage()
    return {"wall_s": round(wall, 3), "usage_before": before, "usage_after": after, "success": True,
            "errors": [], "rows": count_rows(spec["warehouse"], "main", {t: t for t in TABLES})}


KINDS = {"one_process": run_one_process, "dlt": run_dlt, "bare": run_bare}


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    startup_s = time.perf_counter() - _STARTED
    result = KINDS[spec["kind"]](spec)
    result["startup_s"] = round(startup_s, 3)
    out_path.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
