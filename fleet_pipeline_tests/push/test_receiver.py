"""The push receiver over real HTTP (uvicorn on loopback) and real landing files.

Expected values come from the vendor document (docs/vendor-apis/tracksolid-pro.md section 10, the
push samples) and from the landing-file contract of issue 19; the msg_id rule is re-written here
from the contract, independently of the receiver's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from fleet_pipeline.push.landing import LandingFiles, read_landed
from fleet_pipeline_tests.push.running import TOKEN, free_port, receiver_thread, start_receiver_process, wait_healthy

VENDOR_DOC = Path(__file__).resolve().parents[2] / "docs" / "vendor-apis" / "tracksolid-pro.md"
SAMPLES = VENDOR_DOC.parent / "tracksolid-push-samples" / "iothub_push_examples_jimi_webhook.json"
ACK = {"code": 0, "msg": "success"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GPS = [{"deviceImei": "868120246598152", "gpsTime": "2026-01-13 02:24:37", "lng": 113.942885, "lat": 22.576539,
        "gpsSpeed": 0, "satelliteNum": 7, "acc": 1},
       {"deviceImei": "868120246598152", "gpsTime": "2026-01-13 02:24:47", "lng": 113.9429, "lat": 22.57654,
        "gpsSpeed": 12, "satelliteNum": 8, "acc": 1, "name": "Citroën"}]


def contract_id(path: str, item: dict) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((path + canonical).encode("utf-8")).hexdigest()


def form(items, token=TOKEN) -> bytes:
    return urlencode({"token": token, "data_list": json.dumps(items)}).encode()


def landed(root: Path) -> list[dict]:
    return list(read_landed(root))


def test_a_form_batch_is_landed_per_contract_before_the_acknowledgement(tmp_path):
    before = datetime.now(timezone.utc)
    with receiver_thread(tmp_path) as (url, _):
        answer = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
        assert answer.status_code == 200 and answer.json() == ACK
        # Acknowledged means on disk: the lines are there while the file is still being written.
        lines = landed(tmp_path)
        assert [line["item"] for line in lines] == GPS
    after = datetime.now(timezone.utc)
    assert [line["msg_id"] for line in lines] == [contract_id("/pushgps", item) for item in GPS]
    assert {line["push_path"] for line in lines} == {"/pushgps"}
    received = datetime.fromisoformat(lines[0]["received_at"].replace("Z", "+00:00"))
    assert received.tzinfo is not None and before <= received <= after
    files = list(tmp_path.glob("*/*"))
    assert [f.parent.name for f in files] == [received.strftime("%Y-%m-%d")]
    assert all(f.name.endswith(".jsonl") for f in files), "a stopped receiver closes its files"


def test_every_documented_push_path_and_both_encodings_are_accepted(tmp_path):
    documented = re.findall(r"`\{YourURL\}(/\w+)`", VENDOR_DOC.read_text())
    assert len(documented) == 22
    samples = json.loads(SAMPLES.read_text())
    with receiver_thread(tmp_path) as (url, _), httpx.Client(base_url=url) as http:
        for path in documented:
            item = {"deviceImei": "868120246598152", "gateTime": "2026-01-13 02:24:37", "path": path}
            assert http.post(path, content=form([item]), headers=FORM).json() == ACK, path
        # The samples as sent (with this receiver's token): form bodies, a JSON body whose data_list is an array.
        for name, body in samples.items():
            if name.endswith("_form"):
                path = "/" + name.split("_")[0]
                sent = urlencode({**body, "token": TOKEN}).encode()
                assert http.post(path, content=sent, headers=FORM).json() == ACK
        assert http.post("/pushalarm", json={**samples["pushalarm_removal_json"], "token": TOKEN}).json() == ACK
        # JSON whose data_list is a JSON string, and a bare object without data_list.
        assert http.post("/pushhb", json={"token": TOKEN, "data_list": json.dumps(GPS[:1])}).json() == ACK
        bare = {"deviceImei": "868120246598152", "eventType": "UploadAlarmFileEnd", "gateTime": "2026-01-13 02:24:37"}
        assert http.post("/pushIothubEvent", json={"token": TOKEN, **bare}).json() == ACK
        # Section 10.16: msgType beside token, data_list one JSON object.
        response = {"_code": "100", "_msg": "ok", "_imei": "868120246598152", "_serverFlagId": "7", "_content": "x"}
        sent = urlencode({"token": TOKEN, "msgType": "2", "data_list": json.dumps(response)}).encode()
        assert http.post("/pushInstructResponse", content=sent, headers=FORM).json() == ACK
    lines = landed(tmp_path)
    assert {**response, "msgType": "2"} in [line["item"] for line in lines if line["push_path"] == "/pushInstructResponse"]
    assert {line["push_path"] for line in lines} >= set(documented)
    assert json.loads(samples["pushalarm_jtt808_protocol_form"]["data_list"])[0] in [line["item"] for line in lines]
    assert samples["pushalarm_removal_json"]["data_list"][0] in [line["item"] for line in lines]
    assert bare in [line["item"] for line in lines if line["push_path"] == "/pushIothubEvent"]


def test_wrong_or_missing_token_is_refused_and_nothing_lands(tmp_path):
    with receiver_thread(tmp_path) as (url, _):
        wrong = httpx.post(url + "/pushgps", content=form(GPS, token="not-the-token"), headers=FORM)
        missing = httpx.post(url + "/pushgps", content=urlencode({"data_list": json.dumps(GPS)}).encode(),
                             headers=FORM)
    assert wrong.status_code == 403 and "token does not match" in wrong.json()["msg"]
    assert missing.status_code == 401 and "no token" in missing.json()["msg"]
    assert TOKEN not in wrong.text + missing.text
    assert landed(tmp_path) == []


def test_an_oversize_body_is_413_declared_or_streamed(tmp_path):
    items = [dict(GPS[0], filler="x" * 1000) for _ in range(50)]  # ~60 KB, over the 16 KiB limit
    with receiver_thread(tmp_path, max_body_bytes=16 * 1024) as (url, _):
        declared = httpx.post(url + "/pushgps", content=form(items), headers=FORM)
        streamed = httpx.post(url + "/pushgps", content=iter([form(items)]), headers=FORM)  # chunked, no length
        small = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
    for answer in (declared, streamed):
        assert answer.status_code == 413 and "16,384 bytes" in answer.json()["msg"], answer.text
    assert small.json() == ACK
    assert [line["item"] for line in landed(tmp_path)] == GPS


def test_a_malformed_body_is_400_naming_what_is_wrong(tmp_path):
    with receiver_thread(tmp_path) as (url, _):
        bad_list = httpx.post(url + "/pushgps", content=urlencode({"token": TOKEN, "data_list": "[{\"a\":"}).encode(),
                              headers=FORM)
        bad_json = httpx.post(url + "/pushgps", content=b'{"token": "x", ', headers={"Content-Type": "application/json"})
        not_list = httpx.post(url + "/pushgps", json={"token": TOKEN, "data_list": 42})
    assert bad_list.status_code == 400 and "data_list is not valid JSON" in bad_list.json()["msg"]
    assert bad_json.status_code == 400 and "JSON body is not valid JSON" in bad_json.json()["msg"]
    assert not_list.status_code == 400 and "data_list is of type int" in not_list.json()["msg"]
    assert landed(tmp_path) == []


def test_a_partly_bad_batch_lands_its_good_items_and_names_the_bad_ones(tmp_path):
    batch = [GPS[0], 5, GPS[1], {}, "text"]
    with receiver_thread(tmp_path) as (url, _):
        answer = httpx.post(url + "/pushgps", content=form(batch), headers=FORM)
    assert answer.status_code == 400
    body = answer.json()
    assert body["landed"] == 2 and [bad["index"] for bad in body["refused"]] == [1, 3, 4]
    assert "3 of 5 items refused" in body["msg"]
    assert body["refused"][0]["error"] == "item 1 is of type int, expected a JSON object"
    assert [line["item"] for line in landed(tmp_path)] == GPS


def test_the_same_message_twice_lands_once(tmp_path):
    with receiver_thread(tmp_path) as (url, receiver):
        first = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
        again = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
        # The same items on another path are other messages.
        other_path = httpx.post(url + "/pushhb", content=form(GPS), headers=FORM)
    assert first.json() == again.json() == other_path.json() == ACK
    lines = landed(tmp_path)
    assert len(lines) == 4 and len({line["msg_id"] for line in lines}) == 4


def test_unknown_paths_wrong_methods_probes_and_odd_forms(tmp_path):
    with receiver_thread(tmp_path) as (url, _):
        unknown = httpx.post(url + "/pushsomething", content=form(GPS), headers=FORM)
        get = httpx.get(url + "/pushgps")
        probe_empty = httpx.post(url + "/pushgps", content=b"", headers=FORM)
        probe_no_data = httpx.post(url + "/pushgps", content=urlencode({"token": TOKEN}).encode(), headers=FORM)
        stray_ampersand = httpx.post(url + "/pushgps", content=form(GPS[:1]) + b"&", headers=FORM)
        health = httpx.get(url + "/healthz")
    assert unknown.status_code == 404 and "/pushsomething" in unknown.json()["msg"]
    assert get.status_code == 405
    assert probe_empty.json() == ACK and probe_no_data.json() == ACK  # the dashboard's "verify" button
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert stray_ampersand.json() == ACK
    assert [line["item"] for line in landed(tmp_path)] == GPS[:1]


def test_an_abandoned_open_file_is_cut_to_its_last_complete_line_and_closed(tmp_path):
    day = tmp_path / "2026-11-20"
    day.mkdir()
    good = json.dumps({"msg_id": "a" * 64, "push_path": "/pushgps", "received_at": "2026-11-20T10:00:00.000000Z",
                       "item": GPS[0]})
    (day / "100000-1-dead.jsonl.open").write_text(good + "\n" + good[:40])  # killed mid-line
    live = day / "100001-2-live.jsonl.open"
    live.write_text(good + "\n")
    holder = os.open(live, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a live writer's lock: not touched
    try:
        with receiver_thread(tmp_path):
            pass
        assert (day / "100000-1-dead.jsonl").read_text() == good + "\n"
        assert not (day / "100000-1-dead.jsonl.open").exists()
        assert live.exists()
    finally:
        os.close(holder)


@pytest.mark.timeout(300)
def test_sigkill_mid_load_loses_no_acknowledged_message(tmp_path):
    """Senders record what was acknowledged; kill -9 the receiver; every acked msg_id is on disk."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_receiver_process(tmp_path, port)
    acked: list[str] = []
    stop = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(timeout=10) as http:
            for n in range(100_000):
                if stop.is_set():
                    return
                items = [{"deviceImei": f"86{worker:04d}", "seq": n, "k": k} for k in range(10)]
                try:
                    answer = http.post(url + "/pushgps", content=form(items), headers=FORM)
                except httpx.TransportError:
                    return  # the receiver died under this request: nothing of it was acknowledged
                if answer.status_code == 200 and answer.json() == ACK:
                    acked.extend(contract_id("/pushgps", item) for item in items)

    try:
        wait_healthy(url, process=process)
        threads = [threading.Thread(target=sender, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 2_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert len(acked) >= 2_000, "the load did not get going"
    assert list(tmp_path.glob("*/*.jsonl.open")), "killed mid-write, the open file stays behind"
    restarted = start_receiver_process(tmp_path, port)
    try:
        wait_healthy(url, process=restarted)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
    on_disk = {line["msg_id"] for line in read_landed(tmp_path)}
    missing = set(acked) - on_disk
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged messages are not in the landing files"
    assert not list(tmp_path.glob("*/*.jsonl.open")), "the restarted receiver closed the killed one's file"


class _DiskFullOnce(LandingFiles):
    """Landing files whose first write fails as a full disk does."""

    failed = False

    def write_durably(self, lines_by_day):
        if not self.failed:
            self.failed = True
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write_durably(lines_by_day)


def test_a_failed_landing_write_is_503_and_the_resent_batch_lands(tmp_path):
    with receiver_thread(tmp_path, files=_DiskFullOnce(tmp_path)) as (url, _):
        failed = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
        again = httpx.post(url + "/pushgps", content=form(GPS), headers=FORM)
    assert failed.status_code == 503 and "No space left on device" in failed.json()["msg"]
    assert again.json() == ACK
    assert [line["item"] for line in landed(tmp_path)] == GPS  # not skipped as already landed


def test_a_running_receiver_closes_its_file_when_it_is_old_enough_for_the_load(tmp_path):
    with receiver_thread(tmp_path, files=LandingFiles(tmp_path, max_file_age_s=0.2)) as (url, _):
        assert httpx.post(url + "/pushgps", content=form(GPS[:1]), headers=FORM).json() == ACK
        deadline = time.monotonic() + 30
        while list(tmp_path.glob("*/*.jsonl.open")) and time.monotonic() < deadline:
            time.sleep(0.1)
        closed = list(tmp_path.glob("*/*.jsonl"))
        assert len(closed) == 1 and not list(tmp_path.glob("*/*.jsonl.open"))
        assert httpx.post(url + "/pushgps", content=form(GPS[1:]), headers=FORM).json() == ACK
        assert len(list(tmp_path.glob("*/*.jsonl.open"))) == 1  # the next item opens a new file
    assert sorted(line["item"]["gpsTime"] for line in landed(tmp_path)) == [item["gpsTime"] for item in GPS]
