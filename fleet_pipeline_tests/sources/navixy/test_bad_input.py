"""Bad values in a Navixy answer cost their own row, never the day: sandbox over loopback -> DuckDB.

Each case garbles one row of a real answer (sandbox knobs ``garble_first_row`` and
``repeat_first_row``) and compares with the World: the bad row is rejected with the vendor, field,
value and reason (or kept with a field issue when the field is optional), and every other row of
the World's day is loaded.
"""

from __future__ import annotations

import json
from datetime import date

from fleet_pipeline.sandbox.navixy.synthesis import tracker_id
from fleet_pipeline.sources.navixy import assets
from fleet_pipeline_tests.sources.navixy.test_assets import (  # noqa: F401 (fixtures)
    _active_devices,
    _metadata,
    _query,
    _run,
    live_world,
    resources,
    server,
)

DAY = date(2026, 11, 16)
VENDOR = assets.SOURCE.vendor


def _true_points(world, server) -> int:
    return sum(world.day(d.imei, DAY).points.height for d in _active_devices(world, server))


def _true_trips(world, server) -> int:
    return sum(len(world.day(d.imei, DAY).trips) for d in _active_devices(world, server))


def _rejects(resources, table: str) -> list[tuple]:
    return _query(resources, "select vendor, field, value, reason, record from raw_navixy.rejects "
                             "where table_name = ?", [table])


def test_an_event_whose_time_is_not_a_date_time_is_rejected_and_the_day_loads(resources, server):
    assert _run(resources, DAY, [assets.events]).success
    clean = _query(resources, "select event_id from raw_navixy.events order by 1")
    server.knobs.set(garble_first_row={"history/tracker/list": {"time": 12345}})
    result = _run(resources, DAY, [assets.events])
    assert result.success
    [(vendor, field, value, reason, record)] = _rejects(resources, "events")
    assert (vendor, field, value) == (VENDOR, "event_time", "12345")
    assert "event_time: '12345' is not a date-time with a UTC offset" in reason
    bad_id = json.loads(record)["id"]
    loaded = _query(resources, "select event_id from raw_navixy.events order by 1")
    assert loaded == [row for row in clean if row[0] != bad_id] and len(loaded) == len(clean) - 1


def test_an_event_whose_tracker_id_is_not_a_number_is_rejected_and_the_day_loads(resources, server):
    assert _run(resources, DAY, [assets.events]).success
    clean = _query(resources, "select count(*) from raw_navixy.events")[0][0]
    server.knobs.set(garble_first_row={"history/tracker/list": {"tracker_id": "abc"}})
    result = _run(resources, DAY, [assets.events])
    assert result.success
    [(vendor, field, value, reason, _)] = _rejects(resources, "events")
    assert vendor == VENDOR and field.startswith("tracker_id") and value.startswith("abc")
    assert "tracker_id: 'abc' is not a whole number" in reason
    assert _query(resources, "select count(*) from raw_navixy.events") == [(clean - 1,)]


def _a_tracker_with_a_trip_in_the_day(world, server) -> int:
    """A tracker whose first ``track/list`` row is a trip of DAY: the trips are read with a few
    hours' overhang into the next day, so the first row of another tracker's answer may be a
    trip the client drops as not of DAY, before it is ever compared for duplicates."""
    return next(tracker_id(d) for d in _active_devices(world, server)
                if any(t.start.date() == DAY for t in world.day(d.imei, DAY).trips))


def test_a_trip_sent_twice_is_stored_once_and_counted(resources, server, live_world):
    server.knobs.set(repeat_first_row={"track/list"},
                     first_row_tracker_id=_a_tracker_with_a_trip_in_the_day(live_world, server))
    result = _run(resources, DAY, [assets.trips])
    assert result.success
    assert _metadata(result, "trips")["duplicate_rows_dropped"] == 1
    assert _query(resources, "select count(*) from raw_navixy.trips") == [(_true_trips(live_world, server),)]
    assert _query(resources, "select count(*) from (select tracker_id, start_time from raw_navixy.trips "
                             "group by all having count(*) > 1)") == [(0,)]


def test_a_speed_that_is_not_a_number_keeps_its_point_and_is_recorded(resources, server, live_world):
    server.knobs.set(garble_first_row={"track/read": {"speed": "fast"}})
    result = _run(resources, DAY, [assets.track_points])
    assert result.success
    metadata = _metadata(result, "track_points")
    assert metadata["field_issues"] == 1
    assert metadata["field_issue_reasons"] == {"speed_kmh: not a number": 1}
    assert _query(resources, "select count(*) from raw_navixy.track_points") == [(_true_points(live_world, server),)]
    assert _query(resources, "select count(*) from raw_navixy.rejects") == [(0,)]
    [(vendor, table, field, value, reason)] = _query(
        resources, "select vendor, table_name, field, value, reason from raw_navixy.field_issues")
    assert (vendor, table, field, value) == (VENDOR, "track_points", "speed_kmh", "fast")
    assert reason == "speed_kmh: 'fast' is not a number"
    assert _query(resources, "select count(*) from raw_navixy.track_points where speed_kmh is null") == [(1,)]


def test_an_answer_whose_every_row_is_bad_fails_the_step_in_one_line(resources, server):
    assert _run(resources, DAY, [assets.events]).success
    before = _query(resources, "select count(*) from raw_navixy.events")
    server.knobs.set(corrupt_rows_next=10**6)
    result = _run(resources, DAY, [assets.events])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message.strip()
    assert "\n" not in message, message
    assert "raw_navixy.events: all" in message and "rows of the answer were rejected, nothing written" in message
    assert _query(resources, "select count(*) from raw_navixy.events") == before, "the partition keeps its rows"


def test_a_malformed_base_url_fails_the_step_in_one_line_without_a_chained_traceback(tmp_path):
    from fleet_pipeline.ingest.warehouse import WarehouseResource
    from fleet_pipeline.sources.navixy.resources import NavixyResource

    resources = {"navixy": NavixyResource(base_url="http://localhost:99999/v2", api_key="key",
                                          cache_dir=str(tmp_path / "cache"), retry_attempts=1),
                 "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))}
    result = _run(resources, None, [assets.trackers])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error.message.strip().count("\n") == 0, error.message
    assert error.message.startswith("dagster._core.definitions.events.Failure: configuration error: ")
    assert "http://localhost:99999/v2" in error.message
    assert error.cause is None and error.context is None, "no chained traceback under the one line"
