"""Writers of one DuckLake table at once: a Postgres advisory lock per table against retrying the
transaction on a write conflict (issue 18; the choice and the figures are in docs/distributed.md).

``python -m benchmarks.lake_writes [--writers 4] [--rounds 5] [--rows 20000]`` starts a throwaway
Postgres on loopback (``make services`` installs it), then for each strategy a fresh lake, and
``--writers`` processes that each replace their own day of the same table ``--rounds`` times
through ``warehouse.replace_partitions`` (rows, rejects and field issues of the day, as a source
step writes them). It prints, per strategy: wall and CPU seconds (and the seconds from the first
write to the last, without the processes' start-up), commits, conflicts retried, the
longest single write, the Parquet files left on disk, and whether every day holds exactly its rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from fleet_pipeline.ingest.warehouse import TableRef, connect, rejects_frame, replace_partitions, table_turns
from fleet_pipeline.settings import LakeSettings

TABLE = TableRef("raw_bench", "points")
FIRST_DAY = date(2026, 11, 1)
STRATEGIES = ("advisory_lock", "conflict_retry")
MAX_ATTEMPTS = 50


def _is_conflict(error: BaseException) -> bool:
    return isinstance(error, duckdb.Error) and "conflict" in str(error).lower()


def _frame(day: date, rows: int, round_: int) -> pl.DataFrame:
    return pl.DataFrame({"day": [day] * rows, "device": [f"d{i % 200}" for i in range(rows)],
                         "seq": list(range(rows)), "speed": [float((i * 7 + round_) % 120) for i in range(rows)]})


def _writer(lake: LakeSettings, strategy: str, day: date, rounds: int, rows: int, out: multiprocessing.Queue) -> None:
    conn = connect("", lake)
    retries, longest, first = 0, 0.0, time.time()
    try:
        for round_ in range(rounds):
            frame = _frame(day, rows, round_)
            rejects = rejects_frame(TABLE, str(day), ["bench reject"], [{"seq": -1}], vendor="bench")
            started = time.monotonic()
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    turns = (lambda tables: table_turns(lake, tables)) if strategy == "advisory_lock" else None
                    replace_partitions(conn, TABLE, frame, "day", [day], rejects, turns=turns)
                    break
                except Exception as error:
                    if strategy != "conflict_retry" or not _is_conflict(error) or attempt == MAX_ATTEMPTS:
                        raise
                    retries += 1
                    time.sleep(random.uniform(0.01, 0.05) * attempt)  # jittered, growing back-off
            longest = max(longest, time.monotonic() - started)
        out.put({"retries": retries, "longest_s": longest, "error": None, "span": (first, time.time())})
    except Exception as error:  # reported by the parent, which counts what was lost
        out.put({"retries": retries, "longest_s": longest, "error": f"{type(error).__name__}: {error}"[:300],
                 "span": (first, time.time())})
    finally:
        conn.close()


def run_strategy(catalog_dsn: str, root: Path, strategy: str, writers: int, rounds: int, rows: int) -> dict:
    lake = LakeSettings(catalog=catalog_dsn, data_path=str(root / strategy) + "/",
                        extension_directory=root / "extensions", extensions_from="wheels")
    days = [FIRST_DAY + timedelta(days=i) for i in range(writers)]
    with connect("", lake) as conn:  # the table exists before the writers race (as after a first load)
        replace_partitions(conn, TABLE, _frame(days[0], 1, 0).clear(), "day", days)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    processes = [context.Process(target=_writer, args=(lake, strategy, day, rounds, rows, out)) for day in days]
    for process in processes:
        process.start()
    results = [out.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with connect("", lake, read_only=True) as conn:
        counts = dict(conn.execute(f"SELECT day, count(*) FROM {TABLE.sql} GROUP BY 1").fetchall())
        rejects = conn.execute("SELECT count(*) FROM raw_bench.rejects").fetchone()[0]
    files = sum(1 for _ in Path(lake.data_path).rglob("*.parquet"))
    return {
        "strategy": strategy, "writers": writers, "rounds": rounds, "rows": rows,
        "wall_s": round(wall, 2),
        # From the first writer's first write to the last one's end (the processes' start-up left out).
        "writing_s": round(max(r["span"][1] for r in results) - min(r["span"][0] for r in results), 2),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        "commits": writers * rounds - sum(1 for r in results if r["error"]),
        "conflicts_retried": sum(r["retries"] for r in results),
        "longest_write_s": round(max(r["longest_s"] for r in results), 2),
        "parquet_files": files,
        "exact": all(counts.get(day) == rows for day in days) and rejects == writers,
        "errors": [r["error"] for r in results if r["error"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    from fleet_pipeline.services import throwaway_postgres

    with tempfile.TemporaryDirectory(prefix="lake-writes-") as scratch, throwaway_postgres() as postgres:
        for strategy in STRATEGIES:
            # A catalog database and a data path per lake: nothing of one strategy's run is left to the other.
            print(run_strategy(postgres.create_database(strategy), Path(scratch), strategy, args.writers, args.rounds,
                               args.rows), flush=True)


if __name__ == "__main__":
    main()
