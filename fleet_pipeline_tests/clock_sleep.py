"""A client's sleep for tests on the sandbox's manual clock: rate limits and backoff without waiting."""

from __future__ import annotations

from fleet_pipeline.sandbox.server import ManualClock


class ClockSleep:
    """A sleep that records the wait and moves the sandbox clock by it instead of blocking."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds=seconds)
