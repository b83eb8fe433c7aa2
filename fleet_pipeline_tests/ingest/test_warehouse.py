"""Atomic partition replacement on a real DuckDB file, and turns on the file between processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import date

import duckdb
import polars as pl
import pytest

from fleet_pipeline.ingest.warehouse import (
    TableRef,
    WarehouseResource,
    count_rows,
    exclusive_access,
    lock_path,
    rejects_frame,
    replace_partition,
)

TABLE = TableRef("raw_test", "events")
D1, D2 = date(2026, 11, 1), date(2026, 11, 2)


def _batch(day: date, n: int, **extra) -> pl.DataFrame:
    return pl.DataFrame({"partition_date": [day] * n, "imei": [f"{i:015d}" for i in range(n)],
                         "value": list(range(n)), **extra})


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as connection:
        yield connection


def test_replace_is_idempotent_and_touches_one_partition(conn):
    replace_partition(conn, TABLE, _batch(D1, 3), "partition_date", D1)
    replace_partition(conn, TABLE, _batch(D2, 5), "partition_date", D2)
    again = replace_partition(conn, TABLE, _batch(D1, 4), "partition_date", D1)
    assert again.rows_before == 3 and again.rows_added == 1
    assert count_rows(conn, TABLE, "partition_date = ?", [D1]) == 4
    assert count_rows(conn, TABLE, "partition_date = ?", [D2]) == 5


def test_failed_write_leaves_the_previous_partition(conn):
    replace_partition(conn, TABLE, _batch(D1, 3), "partition_date", D1)
    # "value" is BIGINT in the table; text that cannot be cast fails the INSERT after the DELETE ran.
    broken = pl.DataFrame({"partition_date": [D1], "imei": ["1" * 15], "value": ["not a number"]})
    with pytest.raises(duckdb.Error):
        replace_partition(conn, TABLE, broken, "partition_date", D1)
    assert count_rows(conn, TABLE, "partition_date = ?", [D1]) == 3


def test_rejects_are_replaced_with_their_partition(conn):
    rejects = rejects_frame(TABLE, str(D1), ["bad imei", "bad lat"], [{"imei": "1"}, {"lat": 99}])
    replace_partition(conn, TABLE, _batch(D1, 2), "partition_date", D1, rejects)
    replace_partition(conn, TABLE, _batch(D1, 2), "partition_date", D1, rejects.head(1))
    stored = conn.execute("select reason, record from raw_test.rejects").fetchall()
    assert stored == [("bad imei", '{"imei": "1"}')]


def test_new_columns_are_added_and_rows_inserted_by_name(conn):
    replace_partition(conn, TABLE, _batch(D1, 2), "partition_date", D1)
    reordered = _batch(D2, 2, speed_kmh=[1.5, 2.5]).select("value", "speed_kmh", "imei", "partition_date")
    replace_partition(conn, TABLE, reordered, "partition_date", D2)
    rows = conn.execute("select imei, value, speed_kmh from raw_test.events order by partition_date, value").fetchall()
    assert rows[-1] == ("000000000000001", 1, 2.5) and rows[0][2] is None


def test_empty_batch_creates_the_table(conn):
    empty = _batch(D1, 0)
    result = replace_partition(conn, TABLE, empty, "partition_date", D1)
    assert result.rows_written == 0
    assert conn.execute("select count(*) from raw_test.events").fetchone() == (0,)


def test_rows_of_another_partition_are_refused(conn):
    with pytest.raises(ValueError, match="do not belong"):
        replace_partition(conn, TABLE, _batch(D2, 1), "partition_date", D1)


# Holds the warehouse of argv[1] in another process until its stdin closes.
HOLD_IN_ANOTHER_PROCESS = """
import sys
from fleet_pipeline.ingest.warehouse import exclusive_access
with exclusive_access(sys.argv[1], "the other process"):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_writer_waits_for_another_process_and_is_told_who_holds_the_file(tmp_path):
    database = tmp_path / "w.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(database)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        heard: list[str] = []
        releaser = threading.Timer(1.0, holder.stdin.close)
        releaser.start()
        started = time.monotonic()
        with WarehouseResource(database=str(database)).get_connection(holder="this test", on_wait=heard.append) as conn:
            waited = time.monotonic() - started
            replace_partition(conn, TABLE, _batch(D1, 2), "partition_date", D1)
        releaser.join()
    finally:
        holder.kill()
        holder.wait()
    assert waited >= 0.9, "the writer did not wait for the other process"
    assert heard and "held by pid" in heard[0] and "the other process" in heard[0], heard
    assert lock_path(database).read_text() == "", "a released lock still names a holder"


def test_a_thread_waits_its_turn_and_the_holder_may_reenter(tmp_path):
    database, order = tmp_path / "w.duckdb", []
    with exclusive_access(database, "first") as hold:
        with exclusive_access(database, "first again"):  # same thread: re-entrant, no deadlock
            order.append("first")

        def second() -> None:
            with exclusive_access(database, "second"):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert order == ["first"], "the second thread got the file while the first held it"
    thread.join(timeout=10)
    assert order == ["first", "second"]
    assert hold.held_s >= 0.3 and hold.waited_s < 0.3


def test_memory_and_motherduck_databases_need_no_lock():
    assert lock_path(":memory:") is None and lock_path("md:fleet") is None
    with exclusive_access(":memory:", "test") as hold:
        assert hold.waited_s == 0.0
