"""The Dagster UI as the data team sees it: `fleet-pipeline ui` after `fleet-pipeline demo`, in Chromium.

A person clones the project, runs the demo, opens the UI from a new shell (no activated venv: the
PATH a login shell has) and looks around. This test does the same on a copy of the session's shared
demo (`fleet_pipeline_tests/shared_demo.py`, made in such a shell): the README's UI command on a
loopback port, then headless Chromium (Debian's `chromium`, driven by Playwright) through the pages
a person checks. Each page is saved as a screenshot under
`test-artifacts/screenshots/` (git-ignored) so a reviewer can look at what the test saw.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fleet_pipeline import settings
from fleet_pipeline.automation import schedules
from fleet_pipeline.automation.freshness import OVERDUE_SECONDS, expected_partition
from fleet_pipeline.automation.freshness import SENSOR_NAME as FRESHNESS_SENSOR
from fleet_pipeline.reporting.dbt_translator import LAYERS
from fleet_pipeline.reporting.figures import EVENT_TYPES
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.registry import VENDORS as REGISTRY
from fleet_pipeline_tests.reporting import world_figures
from fleet_pipeline_tests.shared_demo import BIN, DEMO_DAYS, N_DEVICES, REPO, SEED, SharedDemo, demo_env

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make test` installs it where missing
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VENDORS = tuple(spec.name for spec in REGISTRY)
CODE_LOCATION = "fleet_pipeline"
UI_LOAD_TIMEOUT_S = 300
PAGE_TIMEOUT_MS = 90_000  # a busy 2-core machine: the UI's first queries load the whole asset graph

# Run alone, the file builds the shared demo itself first (its demo and dbt build: up to 20 minutes each).
pytestmark = pytest.mark.timeout(1800)
expect.set_options(timeout=PAGE_TIMEOUT_MS)


@dataclass(frozen=True)
class Project:
    data_dir: Path
    warehouse: Path
    days: list[date]
    base_url: str
    ui_log: Path
    first_partition: date  # as the code location computed it when the UI loaded it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(base_url: str, query: str) -> dict:
    request = urllib.request.Request(f"{base_url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _wait_for_code_location(base_url: str, ui: subprocess.Popen, log: Path) -> None:
    deadline, last = time.monotonic() + UI_LOAD_TIMEOUT_S, "no answer yet"
    while time.monotonic() < deadline:
        assert ui.poll() is None, f"`fleet-pipeline ui` exited ({ui.returncode}):\n{log.read_text()[-4000:]}"
        try:
            entries = _graphql(base_url, LOCATIONS)["data"]["workspaceOrError"]["locationEntries"]
        except OSError as error:
            last = str(error)
        else:
            last = json.dumps(entries)
            loaded = [e for e in entries if e["name"] == CODE_LOCATION and e["loadStatus"] == "LOADED"]
            if loaded:
                outcome = loaded[0]["locationOrLoadError"]
                assert outcome["__typename"] == "RepositoryLocation", \
                    f"the code location failed to load in the UI: {outcome.get('message', outcome)}"
                return
        time.sleep(2)
    pytest.fail(f"the UI did not load {CODE_LOCATION} within {UI_LOAD_TIMEOUT_S}s (last: {last}):\n"
                f"{log.read_text()[-4000:]}")


def _stop(ui: subprocess.Popen) -> None:
    """`dagster dev` stops its webserver, daemon and code servers on an interrupt; they share its
    process group (started in a session of its own), which is killed if they linger."""
    if ui.poll() is None:
        os.killpg(ui.pid, signal.SIGINT)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(ui.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    ui.wait(timeout=30)


@pytest.fixture(scope="module")
def project(shared_demo: SharedDemo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    # The UI, its daemon and any run they launch write the instance and the warehouse: its own copy.
    data_dir = shared_demo.copy_to(tmp_path_factory.mktemp("ui_browser"))
    # The shell the demo ran in, on the copy.
    env = demo_env(data_dir)
    assert str(BIN) not in env["PATH"].split(":"), f"a new shell already has the venv on PATH: {env['PATH']}"
    warehouse = data_dir / shared_demo.warehouse.name
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        days = [row[0] for row in conn.execute(
            "select distinct partition_date from raw_tracksolid.track_points order by 1").fetchall()]
    assert len(days) == DEMO_DAYS, days

    port = _free_port()
    log = data_dir / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen([str(BIN / "fleet-pipeline"), "ui", "--port", str(port)], env=env, cwd=REPO,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_code_location(base_url, ui, log)
        loaded_on = datetime.now(timezone.utc).date()
        yield Project(data_dir=data_dir, warehouse=warehouse, days=days, base_url=base_url, ui_log=log,
                      first_partition=date.fromisoformat(settings.partitions_start({}, today=loaded_on)))
    finally:
        _stop(ui)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(PAGE_TIMEOUT_MS)
    yield opened
    context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _warehouse(project: Project, sql: str) -> list[tuple]:
    with duckdb.connect(str(project.warehouse), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _metadata_row(page: Page, label: str) -> str:
    """The text of the metadata table row whose key is ``label``."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
    expect(row).to_be_visible()
    return row.inner_text()


def test_the_asset_graph_shows_every_vendor_and_layer(project: Project, page: Page) -> None:
    page.goto(f"{project.base_url}/asset-groups")
    groups = [*VENDORS, *LAYERS, "serving"]
    for group in groups:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    screenshot(page, "01_asset_graph")

    # One layer opened: its lineage (taller than the window: the marts' upstream models around
    # them), then its list, where a person finds every mart without scrolling the graph.
    page.goto(f"{project.base_url}/locations/{CODE_LOCATION}/asset-groups/marts")
    # Eleven marts and their upstream models: the graph opens zoomed out to fit them, so node names
    # are drawn as blocks until a person zooms in; the list below names every mart.
    page.wait_for_load_state("networkidle")
    expect(page.get_by_text("Loading...")).to_have_count(0)  # each node's status, as a person waits for it
    screenshot(page, "02_asset_graph_marts")
    page.get_by_role("tab", name="List").click()
    for mart in ("mileage_daily", "parking_daily", "parking_events", "alarms_daily", "firmware_rollout",
                 "stock_daily", "utilisation_daily", "speeding_daily", "device_health_daily", "geofence_visits",
                 "long_stops"):
        expect(page.locator(f'a[href="/assets/marts/{mart}"]').first).to_be_visible()
    screenshot(page, "02_asset_group_marts_list")


def test_a_raw_asset_lists_its_loaded_and_missing_days(project: Project, page: Page) -> None:
    page.goto(f"{project.base_url}/assets/raw_tracksolid/track_points?view=partitions")
    today = datetime.now(timezone.utc).date()
    # Yesterday is the last partition: today's is still growing and must not read "Missing".
    expected = (today - project.first_partition).days
    expect(page.get_by_text(f"{expected} Partitions Selected")).to_be_visible()
    expect(page.get_by_text(f"Materialized ({DEMO_DAYS})")).to_be_visible()
    expect(page.get_by_text(f"Missing ({expected - DEMO_DAYS})")).to_be_visible()
    partition_list = page.get_by_text((today - timedelta(days=1)).isoformat(), exact=True).first
    expect(partition_list).to_be_visible()
    assert page.get_by_text(today.isoformat(), exact=True).count() == 0, "today's unfinished day is listed"
    screenshot(page, "03_raw_track_points_partitions")

    # A loaded day: its own rows, as in the warehouse.
    day = project.days[-1]
    page.goto(f"{project.base_url}/assets/raw_tracksolid/track_points?view=partitions&partition={day}")
    (rows,), = _warehouse(project, "select count(*) from raw_tracksolid.track_points "
                                   f"where partition_date = '{day}'")
    assert f"{rows:,}" in _metadata_row(page, "dagster/row_count") or str(rows) in _metadata_row(
        page, "dagster/row_count")
    screenshot(page, "04_raw_track_points_one_day")


def test_each_mart_partition_shows_its_own_days_figures(project: Project, page: Page) -> None:
    by_day = dict(_warehouse(project, "select day, round(sum(chosen_km), 1) from marts.mileage_daily group by 1"))
    assert len(by_day) == DEMO_DAYS and len(set(by_day.values())) == DEMO_DAYS, by_day
    total = round(sum(by_day.values()), 1)
    for day in project.days:
        page.goto(f"{project.base_url}/assets/marts/mileage_daily?view=partitions&partition={day}")
        shown = _metadata_row(page, "fleet_km")
        assert repr(float(by_day[day])) in shown, f"{day}: expected fleet_km {by_day[day]}, the page shows {shown!r}"
        assert repr(total) not in shown, f"{day} shows the run's total {total}"
        screenshot(page, f"05_mart_mileage_daily_{day}")


def test_the_demo_runs_appear_under_all_daily(project: Project, page: Page) -> None:
    page.goto(f"{project.base_url}/locations/{CODE_LOCATION}/jobs/all_daily/runs")
    # The run table has loaded when it shows either a run of a demo day or that there is none.
    first_run = page.get_by_text(f"partition: {project.days[0]}")
    expect(first_run.or_(page.get_by_text("No runs found")).first).to_be_visible()
    screenshot(page, "06_all_daily_runs")
    assert page.get_by_text("No runs found").count() == 0, "the all_daily job lists none of the demo's runs"
    for day in project.days:
        expect(page.get_by_text(f"partition: {day}").first).to_be_visible()


def test_automation_lists_the_schedules_and_sensors(project: Project, page: Page) -> None:
    page.goto(f"{project.base_url}/automation")
    for name in (schedules.DAILY_SCHEDULE, schedules.SNAPSHOT_SCHEDULE, schedules.REPORTING_SENSOR, FRESHNESS_SENSOR):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    # The crons of schedules.py as the UI words them (UTC).
    expect(page.get_by_text("At 01:30 AM UTC").first).to_be_visible()
    expect(page.get_by_text("At 11:00 PM UTC").first).to_be_visible()
    expect(page.get_by_text("Run status sensor").first).to_be_visible()
    expect(page.get_by_text("Standard sensor").first).to_be_visible()
    screenshot(page, "07_automation")


def test_assets_read_as_documentation(project: Project, page: Page) -> None:
    # A staging model: its dbt description, no raw Jinja SQL, no placeholder metadata.
    page.goto(f"{project.base_url}/assets/staging/stg_tracksolid__trips")
    expect(page.get_by_text("Tracksolid trips (track.mileage), renamed and typed.")).to_be_visible()
    expect(page.get_by_text("distance_km", exact=True).first).to_be_visible()
    body = page.inner_text("body")
    assert "Raw SQL" not in body and "{{ source(" not in body
    assert "unserializable" not in body, "an object that cannot be shown is listed as metadata"
    screenshot(page, "08_staging_trips")

    # A raw table: every column described.
    page.goto(f"{project.base_url}/assets/raw_tracksolid/trips")
    expect(page.get_by_text("Columns", exact=True).first).to_be_visible()
    columns = _graphql(project.base_url, """{ assetNodeOrError(assetKey: {path: ["raw_tracksolid", "trips"]}) {
        ... on AssetNode { metadataEntries { label ... on TableSchemaMetadataEntry {
            schema { columns { name description } } } } } } }""")["data"]["assetNodeOrError"]["metadataEntries"]
    [schema] = [e["schema"] for e in columns if e["label"] == "dagster/column_schema"]
    undescribed = [c["name"] for c in schema["columns"] if not (c["description"] or "").strip()]
    assert not undescribed, f"raw_tracksolid.trips columns without a description: {undescribed}"
    for column in schema["columns"]:
        expect(page.get_by_text(column["description"], exact=True).first).to_be_visible()
    screenshot(page, "09_raw_trips_columns")


def test_a_passed_freshness_check_is_not_plotted_overdue(project: Project, page: Page) -> None:
    page.goto(f"{project.base_url}/assets/raw_tracksolid/track_points?view=checks&checkDetail=freshness_check")
    # The day due is the freshness rule's (loaded by 06:00 UTC the day after), not simply the newest.
    due = expected_partition(datetime.now(timezone.utc))
    assert due in project.days, f"the demo loaded {project.days}, the check expects {due}"
    expect(page.get_by_text(f"partition {due} was loaded after the day ended")).to_be_visible()
    overdue = _metadata_row(page, OVERDUE_SECONDS).split()
    assert overdue[-1] == "0", f"a passed check shows {overdue}"
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    screenshot(page, "10_freshness_check")


# What the report's charts were drawn with, read back from plotly's own graph divs in the page.
RENDERED_CHARTS = """() => Array.from(document.querySelectorAll('.chart')).map(chart => ({
    id: chart.id,
    drawn: chart.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length,
    points: chart.querySelectorAll('.scatterlayer .point, .barlayer .point').length,
    yTicks: Array.from(chart.querySelectorAll('.ytick text')).map(t => t.textContent),
    xTicks: Array.from(chart.querySelectorAll('.xtick text')).map(t => t.textContent),
    series: (chart.data || []).map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})),
}))"""


def test_the_html_report_shows_the_demo_days(project: Project, page: Page) -> None:
    report = project.data_dir / "reports" / "fleet_report.html"
    assert report.exists(), f"the demo wrote no report at {report}"
    fetched: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:", "blob:", "about:"))
            else fetched.append(request.url))
    page.goto(report.as_uri())
    expect(page.get_by_role("heading", name="Fleet report")).to_be_visible()
    first, last = project.days[0], project.days[-1]
    expect(page.locator("#window")).to_have_text(f"{first} – {last} ({DEMO_DAYS} days, UTC)")
    for section in ("Kilometres per day", "Alarms per 100 km per day", "Alarms by type",
                    "Ignition and trip events per day", "Parking hours per day", "Firmware rollout per model",
                    "Stock on hand per product"):
        expect(page.get_by_role("heading", name=section)).to_be_visible()
    expect(page.locator("#chart-km .scatterlayer .trace").first).to_be_visible()  # plotly has drawn
    charts = {chart["id"]: chart for chart in page.evaluate(RENDERED_CHARTS)}
    for chart in charts.values():  # every chart drawn with axes that carry values
        assert chart["drawn"] == len(chart["series"]) > 0 and chart["points"] > 0, chart["id"]
        assert any(tick.strip() not in ("", "0") for tick in chart["yTicks"]), (chart["id"], chart["yTicks"])
    assert [t for t in charts["chart-km"]["xTicks"] if t] == [d.isoformat() for d in project.days]

    # The report's figures are the World's: km and alarms per vendor and day, alarms without events.
    world = World(seed=SEED, n_devices=N_DEVICES)
    km = {(s["name"], x[:10]): y for s in charts["chart-km"]["series"] for x, y in zip(s["x"], s["y"])}
    rates = {(s["name"], x[:10]): y for s in charts["chart-alarms_per_100km"]["series"]
             for x, y in zip(s["x"], s["y"])}
    for day in project.days:
        true_km = world_figures.km_per_vendor(world, day)
        alarms = world_figures.alarms_per_vendor(world, day)
        for platform, expected in true_km.items():
            assert km[(platform, day.isoformat())] == pytest.approx(expected, rel=0.01), (platform, day)
            assert rates[(platform, day.isoformat())] == pytest.approx(
                100 * alarms.get(platform, 0) / expected, rel=0.01, abs=0.01), (platform, day)
    bars = charts["chart-alarms_by_type"]["series"]
    assert not {x for s in bars for x in s["x"]} & set(EVENT_TYPES), "ignition or trip events counted as alarms"
    assert {s["name"].split(" · ")[-1] for s in charts["chart-events"]["series"]} <= set(EVENT_TYPES)
    # The rollout as of the newest snapshot (taken today, after the demo's days), against its target.
    expect(page.get_by_text("target 90.0%")).to_be_visible()
    assert page.get_by_role("button", name="Share chart...").count() == 0, "a button uploads the chart to a cloud"
    assert fetched == [], f"the report fetched from the network: {fetched}"

    screenshot(page, "11_html_report")
    for key in ("km", "alarms_per_100km", "alarms_by_type", "events", "rollout", "stock"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(f"section#{key}").screenshot(path=str(SCREENSHOTS / f"11_html_report_{key}.png"))
