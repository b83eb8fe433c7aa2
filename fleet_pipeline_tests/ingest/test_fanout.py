"""Per-device calls made several at a time (``fleet_pipeline.ingest.fanout``), with real threads."""

from __future__ import annotations

import random
import threading
import time

import pytest

from fleet_pipeline.ingest.fanout import chunked, fetch_each


class _Tracker:
    """A fetch that sleeps a random few ms and records how many calls overlap."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.started: list[int] = []
        self.fail_on = fail_on
        self.rng = random.Random(7)

    def __call__(self, item: int) -> int:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.started.append(item)
            delay = self.rng.uniform(0.0, 0.01)
        try:
            time.sleep(delay)
            if item == self.fail_on:
                raise RuntimeError(f"call {item} failed")
            return item * item
        finally:
            with self.lock:
                self.in_flight -= 1


def test_results_come_back_in_input_order_with_bounded_concurrency():
    fetch = _Tracker()
    results = list(fetch_each(range(200), fetch, workers=6))
    assert results == [(n, n * n) for n in range(200)]
    assert 1 < fetch.most_in_flight <= 6


def test_one_worker_calls_one_at_a_time_in_the_callers_thread():
    threads = []
    results = list(fetch_each([1, 2, 3], lambda n: threads.append(threading.current_thread()) or n, workers=1))
    assert results == [(1, 1), (2, 2), (3, 3)]
    assert set(threads) == {threading.current_thread()}


def test_a_failed_call_stops_the_fan_out_and_raises():
    fetch = _Tracker(fail_on=30)
    seen = []
    with pytest.raises(RuntimeError, match="call 30 failed"):
        for item, _ in fetch_each(range(1000), fetch, workers=4):
            seen.append(item)
    assert seen == list(range(30))
    # Calls are only ever submitted a few ahead of the consumer: the rest never start.
    assert len(fetch.started) < 30 + 2 * 4 + 1


def test_consuming_lazily_keeps_few_results_waiting():
    fetch = _Tracker()
    answers = fetch_each(range(100), fetch, workers=3)
    next(answers)
    time.sleep(0.1)
    assert len(fetch.started) <= 2 * 3 + 1
    assert [item for item, _ in answers] == list(range(1, 100))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one worker"):
        list(fetch_each([1], lambda n: n, workers=0))
    with pytest.raises(ValueError, match="chunk size"):
        list(chunked([1], 0))
    assert [list(c) for c in chunked(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
