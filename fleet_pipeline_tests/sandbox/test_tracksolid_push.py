"""The Tracksolid sandbox pushes the World's events to a real receiver over loopback HTTP.

Expected counts and fields come from the World (its days and its push-only telemetry), not from
what the receiver landed.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet_pipeline.push.landing import read_landed
from fleet_pipeline.sandbox.tracksolid.push import PushReport, PushSender, batches, push_messages
from fleet_pipeline.sandbox.world import telemetry
from fleet_pipeline_tests.push.running import TOKEN, receiver_thread

DAY = date(2026, 11, 19)


def world_counts(world) -> Counter:
    at = datetime.combine(DAY, datetime.min.time())
    counts: Counter = Counter()
    for d in world.devices_on("tracksolid", at):
        day = world.day(d.imei, DAY)
        counts["/pushgps"] += day.points.height
        counts["/pushalarm"] += len(day.alarms)
        counts["/pushtripreport"] += 2 * len(day.trips)  # a start and an end report per trip
        counts["/pushevent"] += len(telemetry.connections(day))
        counts["/pushhb"] += len(telemetry.heartbeats(world.seed, d, day))
        counts["/pushobd"] += len(telemetry.obd_readings(world.seed, d, day))
        counts["/pushfaultinfo"] += len(telemetry.fault_reports(world.seed, d, day))
    return +counts


def test_a_day_of_the_world_is_pushed_in_batches_and_landed_once_each(world, tmp_path):
    messages = push_messages(world, DAY)
    expected = world_counts(world)
    assert Counter(m.path for m in messages) == expected
    assert all(len(batch) <= 50 and len({m.path for m in batch}) == 1 for batch in batches(messages))
    with receiver_thread(tmp_path) as (url, _), PushSender(url, TOKEN) as sender:
        report = sender.send(messages)
    assert report.acknowledged == len(messages) and report.refused == 0 and report.retries == 0
    lines = list(read_landed(tmp_path))
    assert len(lines) == len({line["msg_id"] for line in lines}) == len(messages)
    assert Counter(line["push_path"] for line in lines) == expected
    # A World fix arrives with its own fields under the vendor's push names.
    imei = next(d.imei for d in world.devices_on("tracksolid") if world.day(d.imei, DAY).points.height)
    fix = world.day(imei, DAY).points.row(0, named=True)
    gps = [line["item"] for line in lines if line["push_path"] == "/pushgps" and line["item"]["deviceImei"] == imei]
    first = min(gps, key=lambda item: item["gpsTime"])
    assert first["gpsTime"] == fix["gps_time"].strftime("%Y-%m-%d %H:%M:%S")
    assert (first["lat"], first["lng"]) == (round(fix["lat"], 6), round(fix["lng"], 6))
    assert first["gateTime"] == fix["received_at"].strftime("%Y-%m-%d %H:%M:%S")


def test_json_encoding_and_small_batches_land_the_same_messages(world, tmp_path):
    messages = [m for m in push_messages(world, DAY) if m.path != "/pushgps"]
    with receiver_thread(tmp_path) as (url, _), PushSender(url, TOKEN, encoding="json", batch_size=7) as sender:
        report = sender.send(messages)
    assert report.requests == sum(-(-count // 7) for count in Counter(m.path for m in messages).values())
    assert {line["msg_id"] for line in read_landed(tmp_path)} == {m.msg_id for m in messages}


class _Scripted(BaseHTTPRequestHandler):
    """Answers from a script: a status and body per request, then the acknowledgement."""

    script: list[tuple[int, str]] = []
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status, body = self.script.pop(0) if self.script else (200, '{"code":0,"msg":"success"}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Scripted.seen = []
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_batch_is_sent_again_until_acknowledged_and_a_refusal_is_not(scripted):
    _, url = scripted
    items = [{"deviceImei": "1", "n": n} for n in range(3)]
    _Scripted.script = [(503, "busy"), (200, '{"code":1,"msg":"later"}'), (200, "<html>")]
    with PushSender(url, TOKEN, encoding="json", sleep=lambda s: None) as sender:
        report = PushReport()
        assert sender.send_batch("/pushgps", items, report)
        assert (report.requests, report.retries, report.acknowledged) == (4, 3, 3)
        assert all(body["data_list"] == items for body in _Scripted.seen)
        _Scripted.script = [(403, '{"code":403,"msg":"token"}')]
        assert not sender.send_batch("/pushgps", items, report)
        assert report.refused == 3 and report.requests == 5 and "HTTP 403" in report.refusals[0]
        _Scripted.script = [(503, "busy")] * 8
        with pytest.raises(RuntimeError, match="no acknowledgement after 8 attempts, last: HTTP 503"):
            sender.send_batch("/pushgps", items, report)
