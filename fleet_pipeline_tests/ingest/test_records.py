"""typed_frame types column by column; it must give exactly what typing each cell's text gives."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from typing import Any

import polars as pl
import pytest

from fleet_pipeline.ingest import records
from fleet_pipeline.ingest.records import Col, typed_frame
from fleet_pipeline.ingest.validation import ISSUES_COLUMN, RAW_COLUMN, split_valid
from fleet_pipeline.sources.navixy.schemas import TRACKER_COLUMNS
from fleet_pipeline.sources.tracksolid.schemas import TRACK_POINT_COLUMNS, TrackPointSchema

KINDS = ("str", "float", "int", "bool", "time", "date")


def per_cell(rows: list[dict[str, Any]], columns: list[Col]) -> pl.DataFrame:
    """The definition typed_frame must keep: each cell's first present variant, as text, converted."""

    def first(row: dict[str, Any], sources: tuple[str, ...]) -> Any:
        values = (records._lookup(row, source) for source in sources)
        return next((value for value in values if value is not None), None)

    text = {col.name: [records._as_text(first(row, col.sources)) for row in rows] for col in columns}
    frame = pl.DataFrame(text, schema={name: pl.String for name in text})
    return frame.select(*[records._convert(pl.col(col.name), col.kind).alias(col.name) for col in columns])


def assert_same_as_per_cell(rows: list[dict[str, Any]], columns: list[Col]) -> pl.DataFrame:
    frame = typed_frame(rows, columns)
    expected = per_cell(rows, columns)
    assert frame.columns == [*expected.columns, ISSUES_COLUMN, RAW_COLUMN]
    assert frame.drop(ISSUES_COLUMN, RAW_COLUMN).schema == expected.schema
    for name in expected.columns:  # column by column, so a failure names the column
        got, want = frame[name].to_list(), expected[name].to_list()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same = (g == w and type(g) is type(w)) or (isinstance(g, float) and isinstance(w, float) and math.isnan(g) and math.isnan(w))
            assert same, f"{name}: {got} != {want}"
    assert frame[RAW_COLUMN].to_list() == rows
    # A typing issue is exactly a cell whose text is not blank and does not convert.
    texts = {col.name: [records._as_text(v) for v in records._pick(rows, col.sources)] for col in columns}
    for i, issues in enumerate(frame[ISSUES_COLUMN].to_list()):
        want = [col.name for col in columns if col.kind != "str" and (texts[col.name][i] or "").strip()
                and expected[col.name][i] is None]
        assert [issue["field"] for issue in issues] == want, f"row {i}: {issues}"
    return frame


# One field, many shapes: each list is one column's values across rows, typed as every kind.
SHAPES = {
    "strings": ["1", " 2.5 ", "", "abc", None, "2026-11-20 1:27:23", "1763600000", "true", "OFF"],
    "ints": [0, 1, -7, 1763600000, 1763600000123, 20261120, None],
    "big ints": [1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30],
    "huge int": [1, 10**400],
    "floats": [45.756981, 1e-05, 1e20, -0.0, 2.5, 0.5, -2.5, float("nan"), float("inf"), None],
    "ints and floats": [1, 2.5, None, 3],
    "numbers as strings and numbers": ["4.8", 4.8, 7, " 9 ", None],
    "bools": [True, False, None],
    "bools and ints": [True, 0, 1, False],
    "bools and strings": [True, "0", "on", False],
    "naive datetimes": [datetime(2026, 11, 19, 0, 12, 32), datetime(1999, 1, 1), None],
    "datetimes with a fraction": [datetime(2026, 11, 19, 0, 12, 32, 250_000), datetime(2026, 11, 19)],
    "aware datetimes": [datetime(2026, 11, 19, 1, tzinfo=timezone.utc), datetime(2026, 11, 19)],
    "dates": [date(2026, 11, 19), "2026-11-20", None],
    "dicts and lists": [{"b": 1, "a": [2, "x"]}, [], ["y", {"z": None}], "plain", 5],
    "all null": [None, None],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_kind_of_column_types_as_its_text_would(shape: str) -> None:
    rows = [{"v": value} for value in SHAPES[shape]] + [{}]  # and one row without the key
    assert_same_as_per_cell(rows, [Col.of(kind, "v", kind=kind) for kind in KINDS])


def test_variants_nested_paths_and_missing_keys() -> None:
    rows = [
        {"alarmTypeName": "A", "gps": {"location": {"lat": "45.1"}}},
        {"alertTypeName": 7, "alarmTypeName": None, "gps": {"location": {"lat": 45.2}}},
        {"alertTypeName": None, "gps": {"location": None}},
        {"gps.location.lat": 46.0, "gps": "not an object"},  # a literal dotted key wins
        {"alarmTypeName": {"nested": True}, "source": {"device_id": 358240051111110}},
        {},
    ]
    columns = [
        Col.of("name", "alarmTypeName", "alertTypeName"),
        Col.of("code", "alertTypeName", "alarmTypeName", kind="int"),
        Col.of("lat", "gps.location.lat", kind="float"),
        Col.of("imei", "source.device_id", "imei"),
    ]
    frame = assert_same_as_per_cell(rows, columns)
    assert frame["name"].to_list() == ["A", "7", None, None, '{"nested": true}', None]
    assert frame["lat"].to_list() == [45.1, 45.2, None, 46.0, None, None]


def test_no_rows_still_give_every_typed_column() -> None:
    frame = assert_same_as_per_cell([], TRACK_POINT_COLUMNS)
    assert frame.height == 0 and frame["gps_time"].dtype == pl.Datetime("us")
    assert typed_frame(iter([]), TRACKER_COLUMNS).height == 0


def test_rejects_carry_the_original_record_as_json() -> None:
    good = "490154203237518"
    rows = [
        {"imei": good, "gpsTime": "2026-11-20 10:00:00", "lat": 45.7, "lng": 4.8},
        {"imei": good, "gpsTime": datetime(2026, 11, 20, 10, 0, 1, 5), "lat": "x", "lng": 4.8, "extra": {"b": 1, "a": 2}},
    ]
    typed = typed_frame(iter(rows), TRACK_POINT_COLUMNS).with_columns(
        partition_date=pl.lit(date(2026, 11, 20)), reuploaded=pl.lit(False)
    )
    split = split_valid(typed, TrackPointSchema)
    assert split.valid.height == 1 and split.rejected == 1
    assert split.records == [json.dumps(rows[1], sort_keys=True, default=str)]
    assert "gps_time" in split.reasons[0] and "lat" in split.reasons[0]
