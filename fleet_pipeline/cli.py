"""``fleet-pipeline``: the demo, backfills, the standalone sandbox servers, the UI, and a configuration report.

    fleet-pipeline demo [--days 7]        materialize every source for the last N complete UTC days
    fleet-pipeline backfill --days 30     backfill every source and model (or --start/--end)
    fleet-pipeline replay --vendor V ...  rebuild raw partitions from the raw archive, calling no vendor
    fleet-pipeline sandbox serve ...      run a vendor sandbox on a loopback port
    fleet-pipeline sandbox push --day D   push the World's Tracksolid events of a day to a receiver
    fleet-pipeline push-receiver          receive Tracksolid pushes (token: FLEET_TRACKSOLID_PUSH_TOKEN)
    fleet-pipeline ui                     open the Dagster UI on the project's instance and warehouse
    fleet-pipeline report [--from --to]   render the HTML report from the serving copy for a window of days
    fleet-pipeline config                 show the resolved configuration (secrets masked)
    fleet-pipeline cluster up|down|status the distributed mode on this machine (docs/distributed.md)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from fleet_pipeline import settings
from fleet_pipeline.instance import prepare_instance_home
from fleet_pipeline.sources import accounts
from fleet_pipeline.sources.registry import BY_NAME


def _fail(message: str) -> int:
    print(f"fleet-pipeline: {message}", file=sys.stderr)
    return 2


def _load_definitions():
    from fleet_pipeline.definitions import defs

    return defs


def _code_location():
    from fleet_pipeline.code_location import CodeLocation

    return CodeLocation.from_workspace()


def _quiet_run_config() -> dict:
    # The CLI prints its own progress lines; Dagster's per-event log stays in the instance (UI).
    return {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunStats:
    """What a run materialized: rows per table (summed over its days) and vendor API usage.

    A run over several days emits one materialization per day; each carries that day's rows and the
    whole run's API figures, so rows are summed and API figures taken once per asset.
    """

    rows: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    without_counts: int = 0
    api_calls: int = 0
    # A sum over calls made side by side, not the time the run spent throttled.
    throttle_wait_s_summed_over_calls: float = 0.0
    checks_failed: int = 0
    checks_passed: int = 0

    @classmethod
    def of(cls, result) -> RunStats:
        stats, api_by_asset = cls(), {}
        for event in result.get_asset_materialization_events():
            materialization = event.event_specific_data.materialization
            metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
            table = "/".join(materialization.asset_key.path)
            if "dagster/row_count" not in metadata:  # dbt models, the serving copy, the report
                stats.without_counts += 1
                continue
            stats.rows[table] = stats.rows.get(table, 0) + int(metadata["dagster/row_count"])
            stats.rejected[table] = stats.rejected.get(table, 0) + int(metadata.get("rejected_rows", 0))
            api_by_asset[table] = (int(metadata.get("api_calls", 0)),
                                   float(metadata.get("throttle_wait_s_summed_over_calls", 0.0)))
        stats.api_calls = sum(calls for calls, _ in api_by_asset.values())
        stats.throttle_wait_s_summed_over_calls = sum(wait for _, wait in api_by_asset.values())
        evaluations = result.get_asset_check_evaluations()
        stats.checks_passed = sum(1 for evaluation in evaluations if evaluation.passed)
        stats.checks_failed = len(evaluations) - stats.checks_passed
        return stats

    def describe(self) -> str:
        parts = [f"{table.removeprefix('raw_').replace('/', '.')} {rows:,}"
                 + (f" ({self.rejected[table]} rejected)" if self.rejected[table] else "")
                 for table, rows in sorted(self.rows.items())]
        if self.without_counts:
            parts.append(f"{self.without_counts} assets without row counts")
        if self.api_calls:
            parts.append(f"{self.api_calls:,} API calls")
        if self.throttle_wait_s_summed_over_calls:
            parts.append(f"{self.throttle_wait_s_summed_over_calls:.1f}s throttle waits summed over calls")
        if not self.rows and not self.without_counts and (self.checks_passed or self.checks_failed):
            parts.append(f"{self.checks_passed} checks passed, {self.checks_failed} failed")
        return ", ".join(parts) or "nothing materialized"


def _execute(location, job, label: str, started: float, **run_args) -> tuple[bool, int]:
    """Run ``job`` in this process as a run of the code location (listed under the job in the UI)
    and print one line on how it went; (succeeded, API calls)."""
    result = location.execute(job=job, run_config=_quiet_run_config(), **run_args)
    stats = RunStats.of(result)
    elapsed = time.monotonic() - started
    if result.success:
        print(f"{label} done in {elapsed:.1f}s: {stats.describe()}", flush=True)
    else:
        print(f"{label} FAILED after {elapsed:.1f}s (run {result.run_id}): {_first_error(result)}", flush=True)
    return result.success, stats.api_calls


def demo(days: int) -> int:
    """Materialize every asset for the last ``days`` complete UTC days, in the project instance."""
    if days < 1:
        return _fail("--days must be at least 1")
    try:
        sandbox = settings.is_sandbox_mode()
        warehouse, lake = settings.duckdb_path(), settings.lake_settings()
        prepare_instance_home()
        defs = _load_definitions()
        location = _code_location()
    except settings.ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    except ValueError as exc:  # workspace.yaml names no code location the CLI can run
        return _fail(str(exc))

    from dagster import DagsterInstance

    from fleet_pipeline.automation import freshness

    instance = DagsterInstance.get()
    today = datetime.now(timezone.utc).date()
    partitions = [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]
    mode = "embedded sandbox (no vendor credentials set)" if sandbox else "live vendor APIs"
    print(f"fleet-pipeline demo: {mode}")
    print(f"  warehouse      {settings.warehouse_description()}")
    print(f"  dagster home   {settings.dagster_home()}")
    print(f"  partitions     {partitions[0]} .. {partitions[-1]} ({len(partitions)} UTC days)")

    sources = [("all_snapshots", None)] + [("all_daily", key) for key in partitions]
    plan = [(f"[{index}/{len(sources)}]", job, key) for index, (job, key) in enumerate(sources, start=1)]
    # The freshness checks, as their sensor runs them once the tables are loaded (the source jobs
    # leave them out): the UI then shows each table's check with the demo's days.
    plan.append(("[checks]", freshness.JOB_NAME, None))
    # Then one reporting run over the whole range: the dbt models are backfilled in one invocation.
    plan.append(("[report]", "reporting", f"{partitions[0]}...{partitions[-1]}"))
    api_calls, failures, started = 0, [], time.monotonic()
    if sandbox:
        # Before the daily loads: they read what the receiver landed.
        failures += _demo_pushes([date.fromisoformat(p) for p in partitions])
    for step, job_name, partition in plan:
        label = f"{step} {job_name}" + (f" {partition}" if partition else "")
        print(f"{label} ...", flush=True)
        step_started = time.monotonic()
        job = defs.resolve_job_def(job_name)
        partition_key, tags = partition, None
        if partition and "..." in partition:
            first, last = partition.split("...")
            partition_key = None
            tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        succeeded, calls = _execute(location, job, label, step_started, instance=instance,
                                    partition_key=partition_key, tags=tags)
        api_calls += calls
        if not succeeded:
            failures.append(label)

    _print_summary(warehouse, api_calls, time.monotonic() - started, lake)
    if failures:
        print(f"{len(failures)} run(s) failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def _demo_pushes(days: list[date]) -> list[str]:
    """The push path of the embedded sandbox: a receiver on loopback (a token made up for the
    run) landing into the data dir, the Tracksolid sandbox pushing the World's events of ``days``
    to it, then the receiver stopped, its files closed. The failed step, if it failed."""
    import secrets

    from fleet_pipeline.push.landing import landing_root
    from fleet_pipeline.push.loopback import DayPushed, push_world_days
    from fleet_pipeline.sandbox.world import World

    label, started = "[push] tracksolid sandbox -> push receiver on loopback", time.monotonic()
    root = landing_root()
    print(f"{label} (landing files in {root}) ...", flush=True)

    def progress(pushed: DayPushed) -> None:
        report = pushed.report
        print(f"  {pushed.day}: {report.acknowledged:,} of {pushed.messages:,} messages acknowledged in "
              f"{report.requests:,} requests ({report.retries} re-sent), {time.monotonic() - started:.1f}s",
              flush=True)

    sandbox = settings.sandbox_settings()
    try:
        done = push_world_days(World(seed=sandbox.seed, n_devices=sandbox.n_devices), days,
                               secrets.token_urlsafe(24), root, progress=progress)
    except (RuntimeError, OSError) as exc:
        print(f"{label} FAILED after {time.monotonic() - started:.1f}s: {exc}", flush=True)
        return [label]
    print(f"{label} done in {time.monotonic() - started:.1f}s: {sum(d.report.acknowledged for d in done):,} "
          "messages landed, receiver stopped", flush=True)
    return []


def _backfill_days(days: int | None, start: str | None, end: str | None, today: date) -> list[date]:
    """The days to backfill: the last ``days`` complete UTC days, or ``start`` to ``end`` inclusive."""
    from fleet_pipeline.automation.partitions import days_between

    if days is not None:
        if start or end:
            raise ValueError("give either --days or --start/--end, not both")
        if days < 1:
            raise ValueError("--days must be at least 1")
        return days_between(today - timedelta(days=days), today - timedelta(days=1))
    if not start:
        raise ValueError("give --days N or --start YYYY-MM-DD [--end YYYY-MM-DD]")
    try:
        first = date.fromisoformat(start)
        last = date.fromisoformat(end) if end else today - timedelta(days=1)
    except ValueError as exc:
        raise ValueError(f"dates must look like 2026-11-20: {exc}") from None
    if last < first:
        raise ValueError(f"--end {last} is before --start {first}")
    if last > today:
        raise ValueError(f"--end {last} is in the future (today is {today} UTC)")
    return days_between(first, last)


def backfill(days: int | None, start: str | None, end: str | None, resume: bool, reporting: bool) -> int:
    """Load every partitioned source for a range of days, cut into runs by each asset's backfill
    policy (``fleet_pipeline.automation.backfill``), then build the reporting models for the range."""
    today = datetime.now(timezone.utc).date()
    try:
        wanted = _backfill_days(days, start, end, today)
        first_partition = date.fromisoformat(settings.partitions_start())
        if wanted[0] < first_partition:
            return _fail(f"{wanted[0]} is before the first partition {first_partition} (FLEET_PARTITIONS_START)")
        sandbox = settings.is_sandbox_mode()
        warehouse, lake = settings.duckdb_path(), settings.lake_settings()
        prepare_instance_home()
        defs = _load_definitions()
        location = _code_location()
    except ValueError as exc:  # settings.ConfigError and code_location.CodeLocationError included
        return _fail(str(exc))

    from dagster import DagsterInstance

    from fleet_pipeline.automation.backfill import plan

    instance = DagsterInstance.get()
    todo, skipped = plan(defs, wanted, instance, today, resume=resume, reporting=reporting)
    label = f"{wanted[0]}...{wanted[-1]}"
    mode = "embedded sandbox (no vendor credentials set)" if sandbox else "live vendor APIs"
    print(f"fleet-pipeline backfill: {mode}")
    print(f"  warehouse      {settings.warehouse_description()}")
    print(f"  dagster home   {settings.dagster_home()}")
    print(f"  partitions     {wanted[0]} .. {wanted[-1]} ({len(wanted)} UTC day{'s' if len(wanted) > 1 else ''})")
    print("  snapshots      not backfilled: they are the fleet's state, which vendors only report as of now"
          + ("; today's is taken first (none yet)" if todo and todo[0].job_name == "all_snapshots" else ""))
    if skipped:
        print(f"  resumed        {len(skipped)} run(s) skipped, their days are already materialized: "
              + "; ".join(run.describe() for run in skipped))

    api_calls, failures, started = 0, [], time.monotonic()
    for index, run in enumerate(todo, start=1):
        step = f"[{index}/{len(todo)}] {run.describe()}"
        if run.job_name == "reporting" and failures:
            print(f"{step} skipped: source runs failed", flush=True)
            continue
        print(f"{step} ...", flush=True)
        run_started = time.monotonic()
        job = defs.resolve_job_def(run.job_name)
        succeeded, calls = _execute(location, job, step, run_started, instance=instance,
                                    partition_key=run.partition_key, tags=run.tags(label),
                                    asset_selection=list(run.asset_keys) or None)
        api_calls += calls
        if not succeeded:
            failures.append(run.describe())

    _print_summary(warehouse, api_calls, time.monotonic() - started, lake)
    if failures:
        print(
            f"{len(failures)} run(s) failed: " + "; ".join(failures) + ". The days of a failed run are "
            "unchanged (each run replaces its days in one transaction). Fix the cause and run "
            f"`fleet-pipeline backfill --start {wanted[0]} --end {wanted[-1]}` again: re-running "
            "replaces every day, never duplicates; add "
            "--resume to skip the runs whose days are already materialized.",
            file=sys.stderr,
        )
        return 1
    return 0


def vendor_tables(vendor: str) -> dict[str, bool]:
    """The raw tables of a vendor: name -> daily-partitioned (else a snapshot)."""
    return {asset.key.path[-1]: asset.partitions_def is not None for asset in BY_NAME[vendor].load_assets()}


def replay(vendor: str, start: str, end: str, table: str | None) -> int:
    """Rebuild ``vendor``'s raw partitions of ``start``..``end`` from the raw archive: the current
    code over the archived answers, each day swapped in one transaction; no vendor is called."""
    from fleet_pipeline.automation.replay import NothingToReplay, plan_replay
    from fleet_pipeline.ingest.archive import Archive

    if vendor not in BY_NAME:
        return _fail(f"unknown vendor {vendor!r}; available: {', '.join(BY_NAME)}")
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        return _fail(f"dates must look like 2026-11-20: {exc}")
    try:
        settings.check_configuration()
        root = settings.archive_root()
        runs = plan_replay(Archive(root), vendor, first, last, vendor_tables(vendor), table)
        warehouse = settings.duckdb_path()
        prepare_instance_home()
        defs = _load_definitions()
        location = _code_location()
    except (NothingToReplay, ValueError) as exc:  # settings.ConfigError included
        return _fail(str(exc))

    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.get()
    schema = f"raw_{vendor}"
    vendor_accounts = BY_NAME[vendor].accounts()
    print(f"fleet-pipeline replay: {vendor} {first} .. {last}" + (f", table {table}" if table else ""))
    print(f"  archive        {root}")
    print(f"  warehouse      {warehouse}")
    print(f"  runs           {len(runs)} archived run(s) to replay, no vendor is called")
    failures, api_calls, started = [], 0, time.monotonic()
    for index, run in enumerate(runs, start=1):
        label = f"[{index}/{len(runs)}] {run.describe()}"
        print(f"{label} ...", flush=True)
        succeeded, calls = _execute(location, defs.resolve_job_def(run.job_name), label, time.monotonic(),
                                    instance=instance, partition_key=run.partition_key, tags=run.tags(root),
                                    asset_selection=[AssetKey(_replayed_key(schema, vendor_accounts, run.account, name))
                                                     for name in run.tables])
        api_calls += calls
        if not succeeded:
            failures.append(run.describe())
    # The vendor calls the replayed steps counted (none, unless one escaped the archive).
    _print_summary(warehouse, api_calls, time.monotonic() - started)
    if failures:
        print(f"{len(failures)} replay run(s) failed: " + "; ".join(failures) + ". Their days are unchanged "
              "(each run replaces its days in one transaction).", file=sys.stderr)
        return 1
    return 0


def _replayed_key(schema: str, vendor_accounts: list[str], account: str, table: str) -> list[str]:
    """The asset a replay of ``account``'s ``table`` runs: the table's own with the one account
    ``default``, else the account's asset (``fleet_pipeline.sources.accounts``)."""
    return [schema, table] if vendor_accounts == [accounts.DEFAULT_ACCOUNT] else [schema, account, table]


def _event_error(event):
    """The error a failure event carries: a step's, a resource's (set up before any step), a run's."""
    if event.is_step_failure and event.step_failure_data:
        return event.step_failure_data.error
    if event.is_resource_init_failure or event.is_run_failure:
        return getattr(event.event_specific_data, "error", None)
    return None


def _first_error(result) -> str:
    """The first failure of a run and its own error, not Dagster's wrapper around it."""
    for event in result.all_events:
        error = _event_error(event)
        if error is None:
            continue
        # Wrappers: "Error occurred while executing op", "Exceeded max_retries", resource errors.
        while error.cause is not None and (error.cls_name or "").startswith(("Dagster", "RetryRequested")):
            error = error.cause
        lines = error.message.strip().splitlines() or [error.cls_name or "unknown error"]
        return f"{event.step_key or 'run'}: {lines[-1]}"
    return "see the run in the Dagster UI (make ui)"


def _print_summary(warehouse: Path, api_calls: int, elapsed_s: float, lake: settings.LakeSettings | None = None) -> None:
    from fleet_pipeline.ingest.warehouse import reading, table_row_counts

    print()
    print(f"Summary ({elapsed_s:.0f}s, {api_calls:,} API calls)")
    if lake is None and not warehouse.exists():
        print("  the warehouse was not created")
        return
    with reading(warehouse, lake, "fleet-pipeline summary", print) as conn:
        counts = table_row_counts(conn)
        rejects = {
            name: conn.execute(
                f'SELECT table_name, count(*) FROM "{name.split(".")[0]}".rejects GROUP BY 1'
            ).fetchall()
            for name in counts
            if name.endswith(".rejects")
        }
    width = max((len(name) for name in counts), default=10)
    print(f"  {'table'.ljust(width)}  {'rows':>12}")
    for name, rows in counts.items():
        if not name.endswith(".rejects"):
            print(f"  {name.ljust(width)}  {rows:>12,}")
    for name, per_table in rejects.items():
        detail = ", ".join(f"{table} {count}" for table, count in per_table) or "none"
        print(f"  {name.ljust(width)}  {sum(c for _, c in per_table):>12,}  ({detail})")
    print(f"  DuckDB file: {warehouse}" if lake is None else f"  warehouse: {settings.warehouse_description()}")
    print("  Open the runs and assets in the Dagster UI with: make ui")


def sandbox_serve(vendor: str, host: str, port: int, seed: int, devices: int) -> int:
    from fleet_pipeline.sandbox.server import serve_forever
    from fleet_pipeline.sandbox.world import World

    if vendor not in BY_NAME:
        return _fail(f"unknown sandbox vendor {vendor!r}; available: {', '.join(BY_NAME)}")
    spec = BY_NAME[vendor]
    module = spec.sandbox_module()
    world = World(seed=seed, n_devices=devices)

    def announce(line: str) -> None:
        base_url = line.rsplit(" ", 1)[-1]
        print(f"{vendor} sandbox on {base_url} ({devices} devices, seed {seed}). Point the pipeline at it:")
        for name, value in spec.sandbox_env(base_url).items():
            print(f"  export {name}={value}")
        print("(the sandbox's public credentials, not secrets). Ctrl-C stops it.", flush=True)

    serve_forever(lambda h, p: module.make_server(world, h, p), host, port, announce=announce)
    return 0


def push_receiver(host: str, port: int, workers: int, landing_dir: str | None) -> int:
    from fleet_pipeline.push import landing, server

    if landing_dir:
        os.environ["FLEET_PUSH_LANDING_DIR"] = str(Path(landing_dir).resolve())  # read by every worker
    try:
        settings.check_configuration()
        server.receiver_from_env()  # refuses to start without a token
        root = landing.landing_root()
    except settings.ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    print(f"Tracksolid push receiver on http://{host}:{port} ({workers} worker(s)), landing files in {root}. "
          "Ctrl-C stops it.", flush=True)
    server.serve(host, port, workers)
    return 0


def sandbox_push(url: str, day: str, token: str | None, encoding: str, batch_size: int, seed: int,
                 devices: int) -> int:
    from fleet_pipeline.sandbox.tracksolid.push import PushSender, push_messages
    from fleet_pipeline.sandbox.world import World
    from fleet_pipeline.sources.tracksolid.settings import PUSH_TOKEN_VAR, push_token

    try:
        token = token or push_token()
        wanted = date.fromisoformat(day)
    except (settings.ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if not token:
        return _fail(f"give --token or set {PUSH_TOKEN_VAR}")
    messages = push_messages(World(seed=seed, n_devices=devices), wanted)
    started = time.monotonic()
    with PushSender(url, token, encoding=encoding, batch_size=batch_size) as sender:
        report = sender.send(messages)
    print(f"pushed {report.acknowledged:,} of {len(messages):,} messages of {wanted} to {url} in "
          f"{report.requests:,} requests ({report.retries} retried, {report.refused} refused) in "
          f"{time.monotonic() - started:.1f}s", flush=True)
    return 0 if report.acknowledged == len(messages) else 1


def ui(port: int) -> int:
    try:
        settings.duckdb_path()
    except settings.ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    prepare_instance_home()
    workspace = settings.project_root() / "workspace.yaml"
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", str(workspace), "-p", str(port)]
    print("Starting: " + " ".join(command), flush=True)
    os.execv(command[0], command)
    return 0  # not reached


def show_config() -> int:
    try:
        settings.check_configuration()
        sandbox = settings.is_sandbox_mode()
        print(f"mode:            {'sandbox' if sandbox else 'live'}")
        print(f"warehouse:       {settings.warehouse_description()}")
        print(f"dagster home:    {settings.dagster_home()}")
        print(f"cache dir:       {settings.cache_dir()}")
        # The distributed mode's choices, never their URLs (they may carry passwords).
        print(f"dagster storage: {'Postgres (FLEET_DAGSTER_POSTGRES)' if settings.dagster_postgres_url() else 'SQLite'}")
        print(f"step executor:   {settings.executor_kind()}")
        print(f"shared state:    {'Redis (FLEET_SHARED_STATE)' if settings.shared_state_url() else 'files'}")
        print(f"partitions from: {settings.partitions_start()}")
        retention = settings.archive_retention_days()
        print(f"raw archive:     {settings.archive_root()} "
              f"({f'{retention} days kept' if retention else 'kept forever'})")
        if sandbox:
            fleet = settings.sandbox_settings()
            print(f"every vendor:    embedded sandbox ({fleet.n_devices} devices, seed {fleet.seed})")
            return 0
        listed = accounts.file_accounts()
        for vendor, read in settings.VENDOR_SETTINGS.items():
            live = read()  # each settings object's repr masks its secrets
            if live or not listed.get(vendor):
                print(f"{vendor + ':':<17}{live!r}" if live else f"{vendor + ':':<17}not configured "
                      "(its assets fail in live mode)")
            for account in listed.get(vendor, []):
                configured = read(accounts.account_env(BY_NAME[vendor], account.name))
                print(f"{vendor + ' ' + account.name + ':':<17}{configured!r}")
    except settings.ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    return 0


def report(first: str | None, last: str | None, days: int | None, out: str | None) -> int:
    """Render the HTML report from the serving copy (as the ``fleet_report`` asset does) for the
    days asked for, without a Dagster run."""
    from fleet_pipeline.reporting.report import REPORT_FILE, parse_day, write_report
    from fleet_pipeline.reporting.serving import SERVING_FILE

    try:
        window = {"first": parse_day(first, "--from"), "last": parse_day(last, "--to"),
                  **({"days": days} if days is not None else {})}
        destination = Path(out).resolve() if out else settings.reports_dir() / REPORT_FILE
        rendered = write_report(settings.serving_dir() / SERVING_FILE, destination, **window)
    except (ValueError, settings.ConfigError) as exc:
        return _fail(f"report: {exc}")
    print(f"report: {destination} ({destination.stat().st_size / 1e6:.1f} MB), {rendered.window.label()}")
    for section in rendered.sections:
        if section.figure is None:
            print(f"  {section.title}: {section.status}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    demo_cmd = commands.add_parser("demo", help="materialize every source for the last N complete UTC days")
    demo_cmd.add_argument("--days", type=int, default=7)

    backfill_cmd = commands.add_parser(
        "backfill", help="load every source for a range of days (cut into runs by each asset's backfill "
        "policy), then build the reporting models for it")
    backfill_cmd.add_argument("--days", type=int, help="the last N complete UTC days")
    backfill_cmd.add_argument("--start", help="first day, YYYY-MM-DD (UTC)")
    backfill_cmd.add_argument("--end", help="last day, YYYY-MM-DD (UTC, included; default yesterday)")
    backfill_cmd.add_argument("--resume", action="store_true",
                              help="skip runs whose every asset and day is already materialized")
    backfill_cmd.add_argument("--no-reporting", dest="reporting", action="store_false",
                              help="load the sources only, do not run the reporting job")

    replay_cmd = commands.add_parser(
        "replay", help="rebuild raw partitions from the raw archive with the current code, calling no vendor")
    replay_cmd.add_argument("--vendor", required=True, help=", ".join(BY_NAME))
    replay_cmd.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD (UTC)")
    replay_cmd.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (UTC, included)")
    replay_cmd.add_argument("--table", help="one raw table of the vendor (default: all of them)")

    sandbox_cmd = commands.add_parser("sandbox", help="vendor API sandboxes")
    sandbox_sub = sandbox_cmd.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_sub.add_parser("serve", help="serve a vendor sandbox on a loopback port")
    serve.add_argument("--vendor", default="tracksolid", help=", ".join(BY_NAME))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8900)
    defaults = settings.SandboxSettings(seed=42, n_devices=200)
    serve.add_argument("--seed", type=int, default=defaults.seed)
    serve.add_argument("--devices", type=int, default=defaults.n_devices)

    push_cmd = sandbox_sub.add_parser("push", help="push the World's Tracksolid events of a UTC day to a "
                                      "receiver, as Jimi does (batches of up to 50, retried until acknowledged)")
    push_cmd.add_argument("--url", default="http://127.0.0.1:8930", help="the receiver's root URL")
    push_cmd.add_argument("--day", required=True, help="UTC day, YYYY-MM-DD")
    push_cmd.add_argument("--token", help="default: FLEET_TRACKSOLID_PUSH_TOKEN")
    push_cmd.add_argument("--encoding", choices=("form", "json"), default="form")
    push_cmd.add_argument("--batch-size", type=int, default=50)
    push_cmd.add_argument("--seed", type=int, default=defaults.seed)
    push_cmd.add_argument("--devices", type=int, default=defaults.n_devices)

    receiver_cmd = commands.add_parser("push-receiver", help="receive Tracksolid pushes into landing files "
                                       "(docs/push.md; token from FLEET_TRACKSOLID_PUSH_TOKEN)")
    receiver_cmd.add_argument("--host", default="127.0.0.1")
    receiver_cmd.add_argument("--port", type=int, default=8930)
    receiver_cmd.add_argument("--workers", type=int, default=1)
    receiver_cmd.add_argument("--landing-dir", help="default: FLEET_PUSH_LANDING_DIR, else <FLEET_DATA_DIR>/push_landing")

    ui_cmd = commands.add_parser("ui", help="open the Dagster UI on this project's instance")
    ui_cmd.add_argument("--port", type=int, default=3000)

    commands.add_parser("config", help="show the resolved configuration (secrets masked)")

    report_cmd = commands.add_parser("report", help="render the HTML report from the serving copy")
    report_cmd.add_argument("--from", dest="first", help="first day, YYYY-MM-DD (UTC; default: --days before --to)")
    report_cmd.add_argument("--to", dest="last", help="last day, YYYY-MM-DD (UTC, included; default: the newest "
                            "day in the marts)")
    report_cmd.add_argument("--days", type=int, help="length of the window without --from (default 30)")
    report_cmd.add_argument("--out", help="file to write (default: data/reports/fleet_report.html)")

    cluster_cmd = commands.add_parser(
        "cluster", help="Postgres, Redis, two Celery workers, the Dagster webserver and daemon on this machine")
    cluster_sub = cluster_cmd.add_subparsers(dest="cluster_command", required=True)
    cluster_up = cluster_sub.add_parser("up", help="start everything, then run the demo through it")
    cluster_up.add_argument("--days", type=int, default=2, help="complete UTC days the demo loads")
    cluster_up.add_argument("--no-demo", dest="demo", action="store_false", help="start everything, run nothing")
    cluster_sub.add_parser("down", help="stop everything `cluster up` started")
    cluster_sub.add_parser("status", help="which of the cluster's processes run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo(args.days)
    if args.command == "backfill":
        return backfill(args.days, args.start, args.end, args.resume, args.reporting)
    if args.command == "sandbox" and args.sandbox_command == "push":
        return sandbox_push(args.url, args.day, args.token, args.encoding, args.batch_size, args.seed,
                            args.devices)
    if args.command == "push-receiver":
        return push_receiver(args.host, args.port, args.workers, args.landing_dir)
    if args.command == "replay":
        return replay(args.vendor, args.start, args.end, args.table)
    if args.command == "sandbox":
        return sandbox_serve(args.vendor, args.host, args.port, args.seed, args.devices)
    if args.command == "ui":
        return ui(args.port)
    if args.command == "config":
        return show_config()
    if args.command == "report":
        return report(args.first, args.last, args.days, args.out)
    if args.command == "cluster":
        from fleet_pipeline import cluster

        if args.cluster_command == "up":
            return cluster.up(args.days, args.demo) if args.days >= 1 else _fail("--days must be at least 1")
        return cluster.down() if args.cluster_command == "down" else cluster.status()
    return _fail(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
