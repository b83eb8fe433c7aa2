"""The demo's push step: the World's days pushed by the sandbox to a receiver on loopback."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from fleet_pipeline.push.landing import complete_bytes, landing_files, read_landed
from fleet_pipeline.push.loopback import push_world_days
from fleet_pipeline.sandbox.tracksolid.push import push_messages
from fleet_pipeline.sandbox.world import World
from fleet_pipeline_tests.conftest import WORLD_NOW

pytestmark = pytest.mark.timeout(300)
DAYS = [date(2026, 11, 13), date(2026, 11, 14)]


def test_the_worlds_days_land_once_each_on_the_day_they_were_sent_and_the_files_are_closed(tmp_path):
    world = World(seed=42, n_devices=12, now=lambda: WORLD_NOW)
    # Sent by the end of the second day: the late fixes the devices upload after it are not pushed yet.
    sent_by = datetime.combine(DAYS[-1] + timedelta(days=1), datetime.min.time())
    expected = [m for day in DAYS for m in push_messages(world, day) if m.sent_at <= sent_by]
    shown = []
    done = push_world_days(world, DAYS, "loopback-test-token", tmp_path, sent_by=sent_by, progress=shown.append)

    assert [(d.day, d.messages, d.report.acknowledged) for d in done] == [
        (day, n, n) for day, n in ((day, sum(1 for m in push_messages(world, day) if m.sent_at <= sent_by))
                                   for day in DAYS)]
    assert shown == done
    assert landing_files(tmp_path) == landing_files(tmp_path, include_open=False), "a file was left open"
    landed = list(read_landed(tmp_path))
    assert Counter(line["msg_id"] for line in landed) == Counter(m.msg_id for m in expected)
    # Each message received when it (or one sent with it) was sent: never before, in the same hour.
    sent_at = {m.msg_id: m.sent_at for m in expected}
    for line in landed:
        received = datetime.fromisoformat(line["received_at"].removesuffix("Z"))
        sent = sent_at[line["msg_id"]]
        assert sent <= received < sent.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), line
    for path in landing_files(tmp_path):
        days = {json.loads(line)["received_at"][:10] for line in complete_bytes(path).splitlines()}
        assert days == {path.parent.name}, path
    assert {path.parent.name for path in landing_files(tmp_path)} >= {day.isoformat() for day in DAYS}
