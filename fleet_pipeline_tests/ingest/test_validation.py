"""Typing vendor rows and splitting batches into valid rows and rejects."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
import pytest

from fleet_pipeline.ingest.records import Col, typed_frame
from fleet_pipeline.ingest.validation import luhn_valid, split_valid
from fleet_pipeline.sources.tracksolid.schemas import TRACK_POINT_COLUMNS, TrackPointSchema

GOOD_IMEI = "490154203237518"  # Luhn-valid


@pytest.mark.parametrize(
    "imei, valid",
    [(GOOD_IMEI, True), ("490154203237519", False), ("49015420323751", False), ("49015420323751x", False)],
)
def test_luhn(imei, valid):
    assert pl.select(luhn_valid(pl.lit(imei))).item() is valid


def test_vendor_shapes_are_typed():
    rows = [
        {"gpsTime": "2026-11-20 1:27:23", "lat": 45.7, "lng": "4.8", "gpsSpeed": "-1", "accStatus": "1"},
        {"gpsTime": "2026-11-20T01:05:33.000Z", "lat": 45.7, "lng": 4.8, "gpsSpeed": "", "ignition": "0"},
        {"gpsTime": "1763600000", "lat": 45.7, "lng": 4.8},
    ]
    frame = typed_frame(rows, TRACK_POINT_COLUMNS)
    assert frame["gps_time"].to_list() == [
        datetime(2026, 11, 20, 1, 27, 23), datetime(2026, 11, 20, 1, 5, 33), datetime(2025, 11, 20, 0, 53, 20)
    ]
    assert frame["lng"].to_list() == [4.8, 4.8, 4.8]
    assert frame["acc_on"].to_list() == [True, False, None]
    assert frame["_raw"][0]["gpsSpeed"] == "-1"  # the record itself; split_valid serialises rejects


def test_first_present_variant_wins():
    frame = typed_frame([{"alarmTypeName": "A"}, {"alertTypeName": "B"}], [Col.of("name", "alarmTypeName", "alertTypeName")])
    assert frame["name"].to_list() == ["A", "B"]


def test_split_keeps_good_rows_and_explains_bad_ones():
    rows = [
        {"imei": GOOD_IMEI, "gpsTime": "2026-11-20 10:00:00", "lat": 45.7, "lng": 4.8},
        {"imei": "490154203237519", "gpsTime": "2026-11-20 10:00:10", "lat": 45.7, "lng": 4.8},
        {"imei": GOOD_IMEI, "gpsTime": "2026-11-20 10:00:20", "lat": 95.0, "lng": 4.8},
        {"imei": GOOD_IMEI, "gpsTime": "2026-11-20 10:00:30", "lat": 0, "lng": 0},
        {"imei": GOOD_IMEI, "gpsTime": "garbage", "lat": 45.7, "lng": 4.8},
    ]
    typed = typed_frame(rows, TRACK_POINT_COLUMNS).with_columns(
        partition_date=pl.lit(datetime(2026, 11, 20).date()), reuploaded=pl.lit(False)
    )
    split = split_valid(typed, TrackPointSchema)
    assert split.valid.height == 1 and split.valid["imei"].to_list() == [GOOD_IMEI]
    assert split.rejected == 4
    assert "Luhn" in split.reasons[0]
    assert "lat" in split.reasons[1]
    assert "(0, 0)" in split.reasons[2]
    assert "gps_time" in split.reasons[3]
    assert json.loads(split.records[1])["lat"] == 95.0
    assert list(split.valid.columns) == list(TrackPointSchema.to_schema().columns)


def test_nested_fields_are_reached_by_dotted_paths():
    rows = [{"source": {"device_id": 358240051111110}, "gps": {"location": {"lat": 45.1}}}, {"source": None}]
    frame = typed_frame(rows, [Col.of("imei", "source.device_id"), Col.of("lat", "gps.location.lat", kind="float")])
    assert frame["imei"].to_list() == ["358240051111110", None]
    assert frame["lat"].to_list() == [45.1, None]


def test_fields_added_beside_the_rows_are_typed_and_kept_as_if_copied_into_each_row():
    # A one-device call's rows do not name the device: its IMEI is given beside them (one mapping
    # shared by the device's rows), and it wins over a field of the same name in the row.
    device = {"imei": GOOD_IMEI}
    rows = [
        {"gpsTime": "2026-11-20 10:00:00", "lat": 45.7, "lng": 4.8, "imei": "stale"},
        {"gpsTime": "2026-11-20 10:00:10", "lat": 95.0, "lng": 4.8},
        {"gpsTime": "2026-11-20 10:00:20", "lat": 45.7, "lng": 4.8, "gpsSpeed": "fast"},
    ]
    extra = [device, device, {"imei": "490154203237519"}]
    typed = typed_frame(rows, TRACK_POINT_COLUMNS, extra).with_columns(
        partition_date=pl.lit(datetime(2026, 11, 20).date()), reuploaded=pl.lit(False)
    )
    assert typed["imei"].to_list() == [GOOD_IMEI, GOOD_IMEI, "490154203237519"]
    split = split_valid(typed, TrackPointSchema)
    assert split.valid["imei"].to_list() == [GOOD_IMEI]
    # Rejects and field issues carry the record with the added fields, exactly as a copy would.
    assert [json.loads(record) for record in split.records] == [{**rows[1], **device}, {**rows[2], **extra[2]}]
    assert "imei" not in rows[1]  # the vendor's rows themselves are left as they were
    with pytest.raises(ValueError, match="2 extra field sets for 3 rows"):
        typed_frame(rows, TRACK_POINT_COLUMNS, extra[:2])
