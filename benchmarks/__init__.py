"""Benchmarks of issue 7: how the pipeline's cost grows with the fleet, against what the machine can do.

Run on demand, never in the test suite::

    make bench                                   # 200 and 1,000 devices x 0 and 200 ms, then 30 days x 1,000
    make bench BENCH_ARGS="--devices 10000 --latency-ms 0 --no-models"
    .venv/bin/python -m benchmarks --help

For each fleet size and sandbox latency, the five vendor sandboxes run in a process of their own
over ``World(seed=42, n_devices=N)`` with the latency added to every request; each vendor's
snapshots and one complete UTC day (5 days back) are then materialized by Dagster into a fresh
DuckDB file, one process per vendor, and ``dbt build`` runs for that day. Per stage it records
wall time, CPU (user + system, dbt's process included), peak RSS, rows per second per table, API
calls per method against the minimum the vendor's batch limits allow (``limits.py``), retries and
throttling waits (from the materialization metadata). Probes (``probes.py``) split each table's
time into JSON parsing, typing, validation and loading, and time the bare limits on the same
data: ``json.loads`` of the same bodies, and a plain DuckDB insert of the same Arrow table.
Then the models over 30 days x 1,000 devices (``models.py``, raw data cached under
``results/cache/``). Output: a table with the issue's targets judged, and
``benchmarks/results/<timestamp>.json`` (git-ignored) with every figure, plus a ``.log`` of the
stage processes. The machine's other load shows in the figures: compare runs, not single numbers.

Before the sizes, ``load`` measures what each process that loads the code location pays (the UI's
code server, a run worker, each step process): CPU and wall of importing the definitions, the
median of several fresh processes.

Modules: ``run`` (orchestration, CLI) · ``load`` (definitions load per process) · ``sandbox_host`` (the sandbox process) · ``stage`` (one
stage process) · ``probes`` (timing hooks) · ``limits`` (minimum calls, rate limits) · ``models``
(many-days models and their raw cache) · ``report`` (figures, targets, table).
"""
