"""Bad input never costs good rows, for every raw table of every vendor, driven by the declarations.

The tables come from each vendor's ``Source`` (``fleet_pipeline.sources.<vendor>.assets.SOURCE``),
so a table added to a declaration is covered without a line here. For each one, valid vendor rows
are generated from the table's own pandera model (a value is valid when the model's column accepts
it) and its typing columns; then each vendor field in turn gets a wrong type, a missing value and an
out-of-range value, and the first row is repeated. The batch goes through the loader into a real
DuckDB file, and the test asserts, per bad row: rejected with the field, value and reason; or, for
an optional field, kept with the field NULL and a field issue; or dropped as a duplicate — and that
every good row of the batch is loaded.

Schema columns that an asset derives (partition and snapshot columns, durations, names mapped from
codes) have no vendor field: they get valid values and are not faulted here.
"""

from __future__ import annotations

import importlib
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandera.polars as pa
import polars as pl
import pytest

from fleet_pipeline.ingest.loader import AllRowsRejected, validate_batch, write_batch
from fleet_pipeline.ingest.records import typed_frame
from fleet_pipeline.ingest.source_assets import Source, Table
from fleet_pipeline.ingest.warehouse import TableRef
from fleet_pipeline.sources.registry import VENDORS

DAY = date(2026, 11, 20)
BASE = datetime(2026, 11, 20, 1, 0, 0)
GOOD_ROWS = 3
GARBAGE = "garbage"
CASE = "_case"  # marks a bad row in its vendor record (typing ignores it; rejects keep it)


def _sources() -> list[Source]:
    found = []
    for spec in VENDORS:
        module = importlib.import_module(spec.assets_module)
        found.extend(value for value in vars(module).values() if isinstance(value, Source))
    return found


TABLES = [(source, name) for source in _sources() for name in source.tables]
IDS = [f"{source.schema}.{name}" for source, name in TABLES]


def test_every_vendor_of_the_registry_is_in_the_matrix():
    assert {source.schema for source, _ in TABLES} == {f"raw_{spec.name}" for spec in VENDORS} >= {
        "raw_navixy", "raw_tracksolid", "raw_teltonika", "raw_aovx", "raw_telesto"}


# --- valid and invalid values, judged by the model's own columns -----------------------------------
def _luhn_imei(i: int) -> str:
    body = f"35{i:012d}"
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


def _statistics(column: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for check in column.checks:
        stats.update(check.statistics or {})
    return stats


def _accepts(column: Any, name: str, value: Any) -> bool:
    frame = pl.DataFrame({name: pl.Series(name, [value], dtype=column.dtype.type)}, strict=False)
    try:
        pa.DataFrameSchema({name: column}).validate(frame)
        return True
    except (pa.errors.SchemaError, pa.errors.SchemaErrors):
        return False


def _valid(column: Any, name: str, position: int, i: int) -> Any:
    dtype, stats = column.dtype.type, _statistics(column)
    if "allowed_values" in stats:
        allowed = sorted(stats["allowed_values"], key=str)
        candidates = [allowed[i % len(allowed)], *allowed]
    elif dtype == pl.Datetime("us"):
        candidates = [BASE + timedelta(hours=position, minutes=i)]
    elif dtype == pl.Date:
        candidates = [DAY]
    elif dtype == pl.Boolean:
        candidates = [True]
    elif dtype.is_numeric():
        low, high = stats.get("min_value", 0), stats.get("max_value", stats.get("min_value", 0) + 1000)
        if dtype.is_integer():
            candidates = [int(low) + 1 + i, int(low) + 1]
        else:
            candidates = [low + (high - low) * 0.3 + i * 0.001]
    else:
        candidates = [_luhn_imei(i), f"{i:032x}", f"{10_000_000 + i}", f"{i:020d}", f"text-{i}"]
    for candidate in candidates:
        if _accepts(column, name, candidate):
            return candidate
    raise AssertionError(f"{name}: no generated value passes the model's column (extend the generator)")


def _out_of_range(column: Any, name: str, good: Any) -> Any | None:
    """A value of the right type that the column refuses, or None when every such value passes."""
    dtype, stats = column.dtype.type, _statistics(column)
    if dtype.is_numeric():
        candidates = [stats.get("max_value", 0) + 1000, stats.get("min_value", 0) - 1000, 999_999]
    elif dtype == pl.String:
        candidates = ["!", good[:-1] + str((int(good[-1]) + 1) % 10) if good[-1:].isdigit() else "!"]
    else:
        return None
    for candidate in candidates:
        if not _accepts(column, name, candidate):
            return candidate
    return None


def _vendor_value(value: Any) -> Any:
    """How a vendor sends it: date-times and dates as text, the rest as JSON values."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _put(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        record = record.setdefault(part, {})
    record[leaf] = value


def _remove(record: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        record = record.get(part) or {}
    record.pop(leaf, None)


_FILLER = {"str": "x", "int": 1, "float": 1.0, "bool": True, "time": BASE.strftime("%Y-%m-%d %H:%M:%S"),
           "date": DAY.isoformat()}


def _declared(source: Source, name: str) -> Table:
    table = source.table(name)
    if not (table.columns and table.key):
        pytest.fail(f"{source.schema}.{name}: declare Table(model, columns, key=...) in its Source "
                    "(typing columns and the key duplicates are removed on)")
    return table


class Generated:
    """Valid rows of one table: the vendor records and the values of the columns an asset derives."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = table.model.to_schema().columns
        self.typed = {col.name for col in table.columns}
        self.fields = [col for col in table.columns if col.name in self.columns]

    def values(self, i: int) -> dict[str, Any]:
        return {name: _valid(column, name, position, i)
                for position, (name, column) in enumerate(self.columns.items())}

    def record(self, i: int) -> dict[str, Any]:
        values, record = self.values(i), {}
        for col in self.table.columns:
            _put(record, col.sources[0], _vendor_value(values[col.name]) if col.name in values else _FILLER[col.kind])
        return record

    def frame(self, records: list[dict[str, Any]], indexes: list[int]) -> pl.DataFrame:
        """Typed as the asset types them, with the derived columns of each row's index."""
        typed = typed_frame(records, list(self.table.columns))
        derived = [name for name in self.columns if name not in self.typed]
        rows = [self.values(i) for i in indexes]
        return typed.with_columns(
            pl.Series(name, [row[name] for row in rows], dtype=self.columns[name].dtype.type) for name in derived
        )


def _partition_column(table: Table) -> str:
    columns = table.model.to_schema().columns
    return "partition_date" if "partition_date" in columns else "snapshot_date"


def _load(tmp_path: Path, source: Source, name: str, chunks: list[pl.DataFrame]):
    table = source.table(name)
    ref = TableRef(source.schema, name)
    batch = validate_batch(ref, chunks, table.model, _partition_column(table), [DAY],
                           unique_key=table.key, vendor=source.vendor)
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    outcome = write_batch(conn, batch)
    return conn, outcome


def _problems(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, tuple]:
    exists = conn.execute("select count(*) from information_schema.tables where table_schema = ? and "
                          "table_name = ?", [schema, table]).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(f'select vendor, field, value, reason, record from "{schema}"."{table}"').fetchall()
    return {json.loads(record)[CASE]: (vendor, field, value, reason) for vendor, field, value, reason, record in rows}


@pytest.mark.parametrize("source, name", TABLES, ids=IDS)
def test_every_table_declares_its_typing_columns_and_key(source, name):
    table = _declared(source, name)
    assert all(column in table.model.to_schema().columns for column in table.key)


@pytest.mark.parametrize("fault", ["wrong type", "missing", "out of range"])
@pytest.mark.parametrize("source, name", TABLES, ids=IDS)
def test_a_bad_field_costs_its_row_at_most(tmp_path, source, name, fault):
    table = _declared(source, name)
    generated = Generated(table)
    good = [generated.record(i) for i in range(GOOD_ROWS)]
    bad, indexes, expect_reject, expect_issue, expect_null = [], [], set(), {}, set()
    for j, col in enumerate(generated.fields):
        column, i = generated.columns[col.name], 100 + j
        record = generated.record(i)
        if fault == "wrong type":
            if col.kind == "str":
                continue  # every vendor value has a text
            _put(record, col.sources[0], GARBAGE)
            (expect_issue if column.nullable else {})[col.name] = GARBAGE
            expect_null.add(col.name) if column.nullable else expect_reject.add(col.name)
        elif fault == "missing":
            for path in col.sources:
                _remove(record, path)
            expect_null.add(col.name) if column.nullable else expect_reject.add(col.name)
        else:
            value = _out_of_range(column, col.name, generated.values(i)[col.name])
            if value is None:
                continue  # the model sets no range on this field
            _put(record, col.sources[0], _vendor_value(value))
            expect_reject.add(col.name)
        record[CASE] = col.name
        bad.append(record)
        indexes.append(i)
    if not bad:
        pytest.skip(f"no field of {name} can be given a {fault}")
    frame = generated.frame(good + bad, list(range(GOOD_ROWS)) + indexes)
    conn, outcome = _load(tmp_path, source, name, [frame])

    rejects = _problems(conn, source.schema, "rejects")
    assert set(rejects) == expect_reject
    for field, (vendor, fields, value, reason) in rejects.items():
        assert vendor == source.vendor and field in fields.split("; ") and field in reason
        if fault == "wrong type":
            assert f"{field}: '{GARBAGE}' is not" in reason and GARBAGE in value
    issues = _problems(conn, source.schema, "field_issues")
    assert {field: value for field, (_, _, value, _) in issues.items()} == expect_issue
    assert all(f"{field}: '{GARBAGE}' is not" in reason for field, (_, _, _, reason) in issues.items())
    kept = GOOD_ROWS + len(bad) - len(expect_reject)
    assert conn.execute(f"select count(*) from {TableRef(source.schema, name).sql}").fetchone()[0] == kept
    assert outcome.valid.height == kept and outcome.rejected == len(expect_reject)
    for field in expect_null:
        nulls = conn.execute(f'select count(*) from {TableRef(source.schema, name).sql} where "{field}" is null')
        assert nulls.fetchone()[0] == 1, f"{field}: the row is kept with the field NULL"


@pytest.mark.parametrize("source, name", TABLES, ids=IDS)
def test_a_repeated_row_is_stored_once_within_and_across_chunks(tmp_path, source, name):
    generated = Generated(_declared(source, name))
    good = [generated.record(i) for i in range(GOOD_ROWS)]
    first_chunk = generated.frame([*good, good[0]], [*range(GOOD_ROWS), 0])
    second_chunk = generated.frame([good[1]], [1])
    conn, outcome = _load(tmp_path, source, name, [first_chunk, second_chunk])
    assert outcome.duplicates == 2 and outcome.rejected == 0
    assert conn.execute(f"select count(*) from {TableRef(source.schema, name).sql}").fetchone()[0] == GOOD_ROWS


@pytest.mark.parametrize("source, name", TABLES, ids=IDS)
def test_an_answer_of_bad_rows_only_fails_in_one_line(source, name):
    generated = Generated(_declared(source, name))
    records = [generated.record(i) for i in range(GOOD_ROWS)]
    required = next(col for col in generated.fields if not generated.columns[col.name].nullable)
    for record in records:
        for path in required.sources:
            _remove(record, path)
    table = source.table(name)
    with pytest.raises(AllRowsRejected) as failure:
        validate_batch(TableRef(source.schema, name), generated.frame(records, list(range(GOOD_ROWS))),
                       table.model, _partition_column(table), [DAY], unique_key=table.key, vendor=source.vendor)
    message = str(failure.value)
    assert "\n" not in message and f"all {GOOD_ROWS} rows" in message and required.name in message
