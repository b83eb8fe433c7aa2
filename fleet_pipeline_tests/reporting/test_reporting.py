"""Reporting: dbt assets load from a fresh checkout, the serving copy is atomic and readable by
another process while the working file is written, and the report needs no network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, Output
from dagster._core.definitions.metadata import FloatMetadataValue, IntMetadataValue

from fleet_pipeline import cli
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import WRITER_POOL
from fleet_pipeline.reporting import dbt_assets
from fleet_pipeline.reporting.figures import Window
from fleet_pipeline.reporting.key_figures import with_key_figures
from fleet_pipeline.reporting.report import write_report
from fleet_pipeline.reporting.serving import PARQUET_DIR, SERVING_FILE, publish

FIXTURE_SOURCES = """\
version: 2
sources:
  - name: raw_testvendor
    tables:
      - name: events
"""
FIXTURE_DAILY = """\
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
select partition_date, imei, count(*) as events from {{ source('raw_testvendor', 'events') }}
{% if var('min_date', none) is not none %}
where partition_date between '{{ var("min_date") }}' and '{{ var("max_date") }}'
{% endif %}
group by all
"""
FIXTURE_DAILY_YML = """\
version: 2
models:
  - name: zz_fixture_events_daily
    columns:
      - name: imei
        tests: [not_null]
"""
FIXTURE_DIM = "select distinct imei from {{ source('raw_testvendor', 'events') }}\n"


@pytest.fixture(scope="module")
def fresh_project(tmp_path_factory) -> Path:
    """The repository's dbt project as a fresh clone has it (no target/, no logs/), plus two models
    of our own so both selections (daily and unpartitioned) exist whatever the project holds."""
    root = tmp_path_factory.mktemp("clone") / "dbt_models"
    shutil.copytree(dbt_assets.DBT_PROJECT_DIR, root, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    fixtures = root / "models" / "marts" / "zz_fixture"
    fixtures.mkdir(parents=True)
    (fixtures / "_zz_fixture__sources.yml").write_text(FIXTURE_SOURCES)
    (fixtures / "zz_fixture_events_daily.sql").write_text(FIXTURE_DAILY)
    (fixtures / "_zz_fixture__models.yml").write_text(FIXTURE_DAILY_YML)
    core = root / "models" / "core" / "zz_fixture"
    core.mkdir(parents=True)
    (core / "zz_fixture_devices.sql").write_text(FIXTURE_DIM)
    return root


def test_dbt_assets_load_from_a_fresh_checkout(fresh_project: Path) -> None:
    assert not (fresh_project / "target").exists()
    project = dbt_assets.load_project(fresh_project)
    assert project.manifest_path.exists()
    assert not dbt_assets.manifest_is_stale(project)

    definitions = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(project)}
    daily, rest = definitions["dbt_daily_models"], definitions["dbt_models"]
    # The model key is dagster-dbt's default (schema and name, as the project configures them).
    daily_key = next(k for k in daily.keys if k.path[-1] == "zz_fixture_events_daily")
    dim_key = next(k for k in rest.keys if k.path[-1] == "zz_fixture_devices")
    assert daily_key in daily.keys and daily.partitions_def == daily_partitions
    assert dim_key in rest.keys and rest.partitions_def is None
    # dbt sources are the loaders' raw assets, so lineage reaches the vendor tables.
    assert daily.asset_deps[daily_key] == {AssetKey(["raw_testvendor", "events"])}
    assert daily.group_names_by_key[daily_key] == "marts"
    assert rest.group_names_by_key[dim_key] == "core"
    assert any(check.asset_key == daily_key and "not_null" in check.name for check in daily.check_keys)
    assert daily.node_def.pool == WRITER_POOL and rest.node_def.pool == WRITER_POOL


def test_manifest_is_reparsed_when_a_model_changes(fresh_project: Path) -> None:
    project = dbt_assets.load_project(fresh_project)
    added = fresh_project / "models" / "core" / "zz_fixture" / "zz_fixture_added.sql"
    added.write_text("select 1 as one\n")
    try:
        assert dbt_assets.manifest_is_stale(project)
        reloaded = dbt_assets.load_project(fresh_project)
        keys = {key for d in dbt_assets.build_dbt_assets(reloaded) for key in d.keys}
        assert "zz_fixture_added" in {key.path[-1] for key in keys}
    finally:
        added.unlink()


def _working_file(path: Path, rows: int) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS main_core; CREATE SCHEMA IF NOT EXISTS main_marts; "
                     "CREATE SCHEMA IF NOT EXISTS main_staging")
        conn.execute("CREATE OR REPLACE TABLE main_core.dim_devices AS "
                     f"SELECT range::VARCHAR AS imei FROM range({rows})")
        conn.execute(f"CREATE OR REPLACE TABLE main_marts.mileage_daily AS SELECT DATE '2026-11-19' AS day, "
                     f"range::VARCHAR AS imei, 1.5 AS distance_km FROM range({rows})")
        conn.execute("CREATE OR REPLACE VIEW main_staging.stg_x AS SELECT 1 AS x")


READER = """
import sys, duckdb
path, rounds = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(rounds):
    with duckdb.connect(path, read_only=True) as conn:
        print(conn.execute("SELECT count(*) FROM marts.mileage_daily").fetchone()[0], flush=True)
"""


def test_serving_copy_is_readable_by_another_process_while_the_pipeline_writes(tmp_path: Path) -> None:
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _working_file(working, rows=3)
    result = publish(working, serving)
    assert result.tables == {"core.dim_devices": 3, "marts.mileage_daily": 3}  # no staging
    parquet = serving / PARQUET_DIR / "mileage_daily.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{parquet}'").fetchone()[0] == 3

    reader = subprocess.Popen([sys.executable, "-c", READER, str(serving / SERVING_FILE), "40"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"
    # The pipeline holds the working file's write lock and changes it while the reader reads.
    writer = duckdb.connect(str(working))
    reader.stdin.write("go\n")
    reader.stdin.flush()
    for added in (2, 4, 6):
        writer.execute(f"INSERT INTO main_marts.mileage_daily SELECT DATE '2026-11-20', 'x', 1.0 FROM range({added})")
    writer.close()
    publish(working, serving)  # swaps the file under the reader
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    counts = {int(line) for line in out.split()}
    assert counts <= {3, 15} and counts, out  # only whole copies: before or after, nothing between
    with duckdb.connect(str(serving / SERVING_FILE), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM marts.mileage_daily").fetchone()[0] == 15
    assert sorted(p.name for p in serving.iterdir()) == [SERVING_FILE, PARQUET_DIR]


def test_a_failed_publish_keeps_the_previous_copy(tmp_path: Path) -> None:
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _working_file(working, rows=4)
    publish(working, serving)
    with pytest.raises(duckdb.Error):
        publish(tmp_path / "missing" / "working.duckdb", serving)
    with duckdb.connect(str(serving / SERVING_FILE), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM core.dim_devices").fetchone()[0] == 4
    assert sorted(p.name for p in serving.iterdir()) == [SERVING_FILE, PARQUET_DIR]


DAY_1, DAY_2, DAY_3 = date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)
# The fixture fleet, in Python: what the report must show is computed from these rows here, never
# read back from the report's own queries.
MILEAGE = [  # imei, day, platform, chosen_km (None: a blocked tracker)
    ("t1", DAY_1, "tracksolid", 120.5), ("t2", DAY_1, "tracksolid", 30.25), ("n1", DAY_1, "navixy", 80.0),
    ("n2", DAY_1, "navixy", None),
    ("t1", DAY_2, "tracksolid", 0.0), ("t2", DAY_2, "tracksolid", 55.5), ("n1", DAY_2, "navixy", 200.0),
    ("t1", DAY_3, "tracksolid", 10.0), ("n1", DAY_3, "navixy", 20.0),
]
ALARMS = [  # imei, day, platform, canonical_type, count
    ("t1", DAY_1, "tracksolid", "overspeed", 3), ("t2", DAY_1, "tracksolid", "sos", 1),
    ("n1", DAY_1, "navixy", "overspeed", 2), ("n1", DAY_1, "navixy", "ignition_on", 4),
    ("n1", DAY_1, "navixy", "ignition_off", 4), ("n1", DAY_1, "navixy", "trip_start", 3),
    ("n1", DAY_2, "navixy", "geofence_in", 1), ("n1", DAY_2, "navixy", "trip_end", 2),
    ("t2", DAY_2, "tracksolid", "other", 5),
]
# utilisation_daily's contract (the kpi-marts helper builds the mart): one row per device and day.
UTILISATION = [  # imei, day, platform, driving_s, engine_on_s, idle_s, km, is_used
    ("t1", DAY_1, "tracksolid", 7200, 9000, 1800, 120.5, True), ("t2", DAY_1, "tracksolid", 0, 600, 600, 0.0, False),
    ("n1", DAY_1, "navixy", 3600, 4800, 1200, 80.0, True), ("n2", DAY_1, "navixy", 0, 0, 0, 0.0, False),
    ("t1", DAY_2, "tracksolid", 0, 0, 0, 0.0, False), ("t2", DAY_2, "tracksolid", 3000, 3600, 600, 55.5, True),
    ("n1", DAY_2, "navixy", 9000, 10800, 1800, 200.0, True),
]
ROLLOUT = [  # model_key, firmware_version, day, share_on_target (repeated per version row)
    ("fmb920", "03.27", DAY_1, 0.5), ("fmb920", "03.28", DAY_1, 0.5), ("fmb920", "03.28", DAY_2, 0.75),
    ("x3", "1.0", DAY_2, 1.0),
]
# Snapshots are taken the day they are, a day after the newest day of the daily marts.
SNAPSHOT_DAY = DAY_3 + timedelta(days=1)
STOCK = [("p1", DAY_1, "TRK-FMB920", "FMB920 tracker", 40), ("p1", DAY_2, "TRK-FMB920", "FMB920 tracker", 37),
         ("p1", SNAPSHOT_DAY, "TRK-FMB920", "FMB920 tracker", 35)]


def _fixture_marts(path: Path, accounts: bool = False, utilisation: bool = True, one_account: bool = False) -> None:
    """A working file whose marts have the documented columns (utilisation_daily its contract's);
    with ``accounts`` the rows carry an account: t1 and n1 of 'north', the others of 'south' (all
    'default', the single-account configuration, with ``one_account``)."""
    def account(imei: str) -> str:
        if one_account:
            return "default"
        return "north" if imei in ("t1", "n1") else "south"

    acc_col = ", account VARCHAR" if accounts else ""
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA main_marts; CREATE SCHEMA main_core")
        conn.execute("CREATE TABLE main_core.dim_devices AS SELECT 'x' AS imei")
        conn.execute("CREATE TABLE main_marts.mileage_daily (imei VARCHAR, partition_date DATE, day DATE, "
                     f"platform VARCHAR, chosen_km DOUBLE, sources_disagree BOOLEAN{acc_col})")
        for imei, day, platform, km in MILEAGE:
            conn.execute("INSERT INTO main_marts.mileage_daily VALUES (?, ?, ?, ?, ?, false"
                         + (", ?)" if accounts else ")"), [imei, day, day, platform, km, *([account(imei)] * accounts)])
        conn.execute("CREATE TABLE main_marts.alarms_daily (imei VARCHAR, partition_date DATE, day DATE, "
                     f"canonical_type VARCHAR, platform VARCHAR, alarm_count BIGINT, unmapped_count BIGINT{acc_col})")
        for imei, day, platform, kind, n in ALARMS:
            conn.execute("INSERT INTO main_marts.alarms_daily VALUES (?, ?, ?, ?, ?, ?, ?" + (", ?)" if accounts else ")"),
                         [imei, day, day, kind, platform, n, n if kind == "other" else 0, *([account(imei)] * accounts)])
        if utilisation:
            conn.execute("CREATE TABLE main_marts.utilisation_daily (partition_date DATE, local_date DATE, "
                         "platform VARCHAR, imei VARCHAR, driving_s BIGINT, engine_on_s BIGINT, idle_s BIGINT, "
                         "idle_share DOUBLE, km DOUBLE, km_working_hours DOUBLE, km_after_hours DOUBLE, "
                         f"km_weekend DOUBLE, is_used BOOLEAN{acc_col})")
            for imei, day, platform, driving, engine, idle, km, used in UTILISATION:
                conn.execute("INSERT INTO main_marts.utilisation_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
                             + (", ?)" if accounts else ")"),
                             [day, day, platform, imei, driving, engine, idle, idle / engine if engine else None, km,
                              km * 0.75, km * 0.25, 0.0, used, *([account(imei)] * accounts)])
        conn.execute("CREATE TABLE main_marts.firmware_rollout (model_key VARCHAR, firmware_version VARCHAR, "
                     "day DATE, share_on_target DOUBLE, attempts BIGINT, attempts_success BIGINT)")
        for model, version, day, share in ROLLOUT:
            conn.execute("INSERT INTO main_marts.firmware_rollout VALUES (?, ?, ?, ?, 4, 3)", [model, version, day, share])
        conn.execute("CREATE TABLE main_marts.stock_daily (product_id VARCHAR, day DATE, sku VARCHAR, "
                     "product_name VARCHAR, model_key VARCHAR, stock_on_hand BIGINT, activations BIGINT)")
        for product, day, sku, name, units in STOCK:
            conn.execute("INSERT INTO main_marts.stock_daily VALUES (?, ?, ?, ?, 'fmb920', ?, 1)",
                         [product, day, sku, name, units])


def _expected_per_day(rows, value, key=lambda row: row[2], keep=lambda row: True) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        if keep(row) and value(row) is not None:
            totals[key(row)][row[1].isoformat()] += value(row)
    return {name: dict(days) for name, days in totals.items()}


def chart_figures(page_html: str) -> dict[str, dict]:
    """The figure each chart of the page is drawn from: chart id -> plotly figure (data, layout)."""
    found = {}
    for match in re.finditer(r'<script type="application/json" class="chart-figure" data-chart="([^"]+)">(.*?)</script>',
                             page_html, re.DOTALL):
        found[match.group(1)] = json.loads(match.group(2))
    return found


def traces(figure: dict) -> dict[tuple[str, str], float]:
    """(series name, x) -> y of a chart (x: the ISO day of a line chart)."""
    return {(trace["name"], x): y for trace in figure["data"] for x, y in zip(trace["x"], trace["y"])}


def flat(series: dict[str, dict[str, float]]) -> dict[tuple[str, str], float]:
    return {(name, day): value for name, days in series.items() for day, value in days.items()}


def fetched_resources(page_html: str) -> list[str]:
    """Every src/href of the page that a browser would fetch from elsewhere (anything but an
    in-page anchor)."""
    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(value for name, value in attrs if name in ("src", "href") and value
                         and not value.startswith("#"))

    Links().feed(page_html)
    return found


def _render(tmp_path: Path, accounts: bool = False, utilisation: bool = True, one_account: bool = False,
            **window) -> tuple[str, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _fixture_marts(working, accounts=accounts, utilisation=utilisation, one_account=one_account)
    publish(working, serving)
    page = tmp_path / "reports" / "fleet_report.html"
    report = write_report(serving / SERVING_FILE, page, datetime(2026, 11, 21, 6, 0), **window)
    return page.read_text(), report


def test_report_charts_carry_the_fleets_figures_per_vendor_and_day(tmp_path: Path) -> None:
    text, report = _render(tmp_path)
    charts = chart_figures(text)
    # By default 30 days up to the newest day, but none before the oldest the marts have.
    assert (report.window.first, report.window.last) == (DAY_1, DAY_3)
    assert traces(charts["chart-km"]) == pytest.approx(flat(_expected_per_day(MILEAGE, lambda r: r[3])))

    alarms = [r for r in ALARMS if r[3] not in ("ignition_on", "ignition_off", "trip_start", "trip_end")]
    km = _expected_per_day(MILEAGE, lambda r: r[3])
    counts = _expected_per_day(alarms, lambda r: r[4])
    rates = {vendor: {day: 100 * counts.get(vendor, {}).get(day, 0) / value for day, value in days.items() if value}
             for vendor, days in km.items()}
    assert traces(charts["chart-alarms_per_100km"]) == pytest.approx(flat(rates), abs=0.01)
    # Alarms and events apart: the bars hold alarms only, the event chart the ignition and trip events.
    bars = {key: n for key, n in traces(charts["chart-alarms_by_type"]).items() if n}
    by_kind: dict[tuple[str, str], int] = defaultdict(int)
    for _, _, platform, kind, n in alarms:
        by_kind[(platform, kind)] += n
    assert bars == by_kind
    events = [r for r in ALARMS if r not in alarms]
    expected_events = flat(_expected_per_day(events, lambda r: r[4], key=lambda r: f"{r[2]} · {r[3]}"))
    # A day the mart has rows for is a day of 0 events where a type has none.
    loaded_days = {r[1].isoformat() for r in ALARMS}
    expected_events |= {(name, day): 0 for name, _ in expected_events for day in loaded_days
                        if (name, day) not in expected_events}
    assert traces(charts["chart-events"]) == expected_events

    used = _expected_per_day(UTILISATION, lambda r: 1.0, keep=lambda r: r[7])
    devices = _expected_per_day(UTILISATION, lambda r: 1.0)
    assert traces(charts["chart-utilisation"]) == pytest.approx(
        flat({v: {d: used.get(v, {}).get(d, 0) / n for d, n in days.items()} for v, days in devices.items()}))
    idle, engine = (_expected_per_day(UTILISATION, lambda r, i=i: r[i]) for i in (5, 4))
    assert traces(charts["chart-idle_share"]) == pytest.approx(
        flat({v: {d: idle[v][d] / s for d, s in days.items() if s} for v, days in engine.items()}), abs=1e-4)

    assert traces(charts["chart-rollout"]) == flat({"fmb920": {DAY_1.isoformat(): 0.5, DAY_2.isoformat(): 0.75},
                                                    "x3": {DAY_2.isoformat(): 1.0}})
    # The stock up to the newest snapshot, after the daily marts' newest day.
    assert traces(charts["chart-stock"]) == {("TRK-FMB920", day.isoformat()): units for _, day, _, _, units in STOCK}
    assert report.snapshots == Window(DAY_1, SNAPSHOT_DAY)
    assert f"rollout and stock up to the newest snapshot, {SNAPSHOT_DAY}" in text
    # Parking is not in the fixture: the section says so and the others still render.
    assert "parking_daily not built yet" in text
    assert f"{DAY_1} – {DAY_3} (3 days, UTC)" in text


def test_report_charts_have_axes_tooltips_and_consistent_formats(tmp_path: Path) -> None:
    charts = chart_figures(_render(tmp_path, first=DAY_1, last=DAY_3)[0])
    km = charts["chart-km"]
    assert km["layout"]["yaxis"]["tickformat"] == ",.1f" and km["layout"]["yaxis"]["title"]["text"] == "km"
    assert km["layout"]["xaxis"]["type"] == "date" and km["layout"]["xaxis"]["tickformat"] == "%Y-%m-%d"
    assert all("%{y:,.1f} km" in trace["hovertemplate"] for trace in km["data"])
    tracksolid = next(trace for trace in km["data"] if trace["name"] == "tracksolid")
    assert tracksolid["text"] == ["150.8", "55.5", "10.0"]  # values beside the points of a short window
    share = charts["chart-utilisation"]
    assert share["layout"]["yaxis"]["tickformat"] == ",.1%" and "%{y:,.1%}" in share["data"][0]["hovertemplate"]
    rollout = charts["chart-rollout"]
    assert rollout["layout"]["shapes"][0]["y0"] == 0.9
    assert any(a["text"] == "target 90.0%" for a in rollout["layout"]["annotations"])


def test_report_groups_by_account_when_the_marts_have_one(tmp_path: Path) -> None:
    charts = chart_figures(_render(tmp_path, accounts=True)[0])

    def account(row) -> str:
        return "north" if row[0] in ("t1", "n1") else "south"

    assert traces(charts["chart-km"]) == pytest.approx(
        flat(_expected_per_day(MILEAGE, lambda r: r[3], key=lambda r: f"{r[2]} · {account(r)}")))
    assert {name for name, _ in traces(charts["chart-events"])} == {"navixy · north · ignition_on",
                                                                  "navixy · north · ignition_off",
                                                                  "navixy · north · trip_start",
                                                                  "navixy · north · trip_end"}
    assert {name for name, _ in traces(charts["chart-utilisation"])} == {"tracksolid · north", "tracksolid · south",
                                                          "navixy · north", "navixy · south"}


def test_report_keeps_one_series_per_vendor_when_every_row_is_the_default_accounts(tmp_path: Path) -> None:
    """The marts always carry `account`; with no accounts file every row is 'default''s, and the
    report draws the vendors as before there were accounts."""
    charts = chart_figures(_render(tmp_path, accounts=True, one_account=True)[0])
    assert traces(charts["chart-km"]) == pytest.approx(flat(_expected_per_day(MILEAGE, lambda r: r[3])))
    assert {name for name, _ in traces(charts["chart-utilisation"])} == {"tracksolid", "navixy"}


def test_report_window_is_configurable(tmp_path: Path) -> None:
    text, report = _render(tmp_path, first=DAY_2, last=DAY_2)
    assert (report.window.first, report.window.last) == (DAY_2, DAY_2)
    km = traces(chart_figures(text)["chart-km"])
    assert km == pytest.approx({("tracksolid", "2026-11-19"): 55.5, ("navixy", "2026-11-19"): 200.0})
    assert "2026-11-19 – 2026-11-19 (1 day, UTC)" in text
    assert traces(chart_figures(text)["chart-stock"]) == {("TRK-FMB920", "2026-11-19"): 37}  # a last day is the last
    _, last_two = _render(tmp_path / "days", days=2)
    assert (last_two.window.first, last_two.window.last) == (DAY_2, DAY_3)
    with pytest.raises(ValueError, match="after the last day"):
        _render(tmp_path / "reversed", first=DAY_3, last=DAY_1)


def test_report_is_one_file_that_fetches_nothing_and_degrades_without_marts(tmp_path: Path) -> None:
    text, report = _render(tmp_path, utilisation=False)
    assert fetched_resources(text) == [], fetched_resources(text)
    assert "<link" not in text and "<iframe" not in text and "@import" not in text
    assert text.count("plotly.js v") >= 1 and "Plotly.newPlot" in text  # the library itself is inline
    # plotly.js 4 has a "Share chart" button that uploads the chart to plotly's cloud: off, with no server to send to.
    assert '"showSendToCloud":false' in text.replace(" ", "") and '"plotlyServerURL":""' in text.replace(" ", "")
    sections = {s.key: s for s in report.sections}
    for key in ("utilisation", "idle_share"):
        assert sections[key].figure is None and sections[key].status == "utilisation_daily not built yet"
    assert "utilisation_daily not built yet" in text
    assert sections["km"].figures["km_total"] == pytest.approx(sum(r[3] or 0 for r in MILEAGE), abs=0.01)

    missing = write_report(tmp_path / "nowhere.duckdb", tmp_path / "reports" / "empty.html")
    assert all(s.figure is None and s.figures == {} for s in missing.sections)
    empty = (tmp_path / "reports" / "empty.html").read_text()
    assert empty.count("not built yet") == len(missing.sections)
    assert "plotly" not in empty.lower()  # no chart, no 4.8 MB of library


def test_the_cli_renders_the_report_for_the_days_asked(tmp_path: Path, monkeypatch, capsys) -> None:
    _render(tmp_path)  # the serving copy under tmp_path/serving
    monkeypatch.setenv("FLEET_SERVING_DIR", str(tmp_path / "serving"))
    out = tmp_path / "asked.html"
    assert cli.main(["report", "--from", "2026-11-19", "--to", "2026-11-20", "--out", str(out)]) == 0
    assert "2026-11-19 – 2026-11-20 (2 days, UTC)" in capsys.readouterr().out
    assert {day for _, day in traces(chart_figures(out.read_text())["chart-km"])} == {"2026-11-19", "2026-11-20"}
    assert cli.main(["report", "--from", "19.11.2026", "--out", str(out)]) == 2
    assert "--from must be a day as YYYY-MM-DD, got '19.11.2026'" in capsys.readouterr().err


PARTITIONED_MARTS = ("mileage_daily", "alarms_daily", "utilisation_daily")


def test_each_partition_of_the_daily_marts_gets_numeric_figures_with_stable_keys(tmp_path: Path) -> None:
    # What the dbt step does after dbt exits: each day of the run gets its own day's figures
    # (Dagster plots a numeric key per partition in the asset's Plots tab).
    working = tmp_path / "working.duckdb"
    _fixture_marts(working)
    keys = {f"out_{mart}": AssetKey(["marts", mart]) for mart in PARTITIONED_MARTS}
    recorded: dict[tuple[str, str], dict] = {}
    outputs = [Output(None, output_name=name) for name in keys]
    passed = list(with_key_figures(outputs, keys, working, Window(DAY_1, DAY_3),
                                   lambda key, day, metadata: recorded.__setitem__((key.path[-1], day), metadata)))
    assert passed == outputs
    assert set(recorded) == {(mart, day.isoformat()) for mart in PARTITIONED_MARTS for day in (DAY_1, DAY_2, DAY_3)}

    def numbers(mart: str, day: date) -> dict[str, float]:
        metadata = recorded[(mart, day.isoformat())]
        return {k: v.value for k, v in metadata.items() if isinstance(v, (FloatMetadataValue, IntMetadataValue))}

    alarm_types = ("ignition_on", "ignition_off", "trip_start", "trip_end")
    for day in (DAY_1, DAY_2):
        km = {p: sum(r[3] or 0 for r in MILEAGE if r[1] == day and r[2] == p) for p in ("tracksolid", "navixy")}
        mileage = numbers("mileage_daily", day)
        assert mileage["fleet_km"] == pytest.approx(sum(km.values()), abs=0.051)  # shown to 0.1 km
        assert mileage["km_tracksolid"] == pytest.approx(km["tracksolid"]) and mileage["km_navixy"] == km["navixy"]
        alarms = numbers("alarms_daily", day)
        count = sum(r[4] for r in ALARMS if r[1] == day and r[3] not in alarm_types)
        event_count = sum(r[4] for r in ALARMS if r[1] == day and r[3] in alarm_types)
        assert (alarms["alarms"], alarms["ignition_trip_events"]) == (count, event_count)
        assert alarms["alarms_per_100km"] == pytest.approx(100 * count / sum(km.values()), abs=0.01)
        for platform in ("tracksolid", "navixy"):
            assert alarms.get(f"alarms_{platform}", 0) == sum(
                r[4] for r in ALARMS if r[1] == day and r[2] == platform and r[3] not in alarm_types)
        rows = [r for r in UTILISATION if r[1] == day]
        used = numbers("utilisation_daily", day)
        assert used["devices"] == len(rows) and used["devices_used"] == sum(r[7] for r in rows)
        assert used["utilisation"] == pytest.approx(sum(r[7] for r in rows) / len(rows), abs=1e-4)
        assert used["idle_share"] == pytest.approx(sum(r[5] for r in rows) / sum(r[4] for r in rows), abs=1e-4)
        assert used["driving_hours"] == pytest.approx(sum(r[3] for r in rows) / 3600, abs=0.01)
        assert used["km_after_hours"] == pytest.approx(sum(r[6] for r in rows) * 0.25, abs=0.01)
        for platform in ("tracksolid", "navixy"):
            mine = [r for r in rows if r[2] == platform]
            assert used[f"utilisation_{platform}"] == pytest.approx(sum(r[7] for r in mine) / len(mine), abs=1e-4)
    # Stable keys: every partition of a mart has the same numeric keys, whatever its values.
    for mart in ("mileage_daily", "alarms_daily"):
        assert len({frozenset(numbers(mart, day)) for day in (DAY_1, DAY_2)}) == 1, mart
    # A mart without a column a figure reads still materializes, its metadata naming what is missing.
    with duckdb.connect(str(working)) as conn:
        conn.execute("ALTER TABLE main_marts.utilisation_daily DROP COLUMN idle_s")
    recorded.clear()
    list(with_key_figures(outputs, keys, working, Window(DAY_1, DAY_1),
                          lambda key, day, metadata: recorded.__setitem__((key.path[-1], day), metadata)))
    assert recorded[("utilisation_daily", DAY_1.isoformat())]["key_figures_missing"].value == \
        "utilisation_daily has no column idle_s yet"
    assert numbers("mileage_daily", DAY_1)["km_navixy"] == 80.0


LOADED_DBT_MODULES = """
import sys
import fleet_pipeline.definitions
print(sorted({name.split('.')[0] for name in sys.modules if name.split('.')[0] in ('dbt', 'dagster_dbt')}))
"""


def test_definitions_load_without_dbt_once_the_specs_are_kept(fresh_project: Path) -> None:
    # The code server and every step process load the definitions; dagster-dbt and dbt-core cost
    # seconds of CPU to import, so they are imported when the manifest changed and by the dbt step
    # only. The first load derives the specs, the next one reads them.
    derived = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(dbt_assets.load_project(fresh_project))}
    assert (fresh_project / "target" / dbt_assets.SPECS_FILE).exists()
    kept = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(dbt_assets.load_project(fresh_project))}
    for name, definition in derived.items():
        assert {spec.key: spec for spec in kept[name].specs} == {spec.key: spec for spec in definition.specs}
        assert kept[name].check_keys == definition.check_keys and kept[name].op.tags == definition.op.tags

    dbt_assets.load_project()  # the repository's own project: parsed and its specs kept if stale
    dbt_assets.build_dbt_assets(dbt_assets.load_project())
    loaded = subprocess.run([sys.executable, "-c", LOADED_DBT_MODULES], capture_output=True, text=True,
                            timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "[]", loaded.stdout
