"""A push receiver for tests: in this process on a uvicorn thread, or as the CLI's own process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet_pipeline.push import loopback
from fleet_pipeline.push.loopback import free_port
from fleet_pipeline.push.receiver import PushReceiver

TOKEN = "test-push-token-1234"
__all__ = ["TOKEN", "free_port", "receiver_thread", "start_receiver_process", "wait_healthy"]


def wait_healthy(url: str, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    def gone() -> str | None:
        if process is None or process.poll() is None:
            return None
        return f"exited with {process.returncode}: {process.stderr.read()}"

    loopback.wait_healthy(url, timeout_s, gone)


@contextmanager
def receiver_thread(landing: Path, max_body_bytes: int = 1024 * 1024, **kwargs) -> Iterator[tuple[str, PushReceiver]]:
    """A receiver served by uvicorn on a thread of this process: (base URL, the receiver object)."""
    with loopback.receiver_thread(TOKEN, landing, max_body_bytes, **kwargs) as running:
        yield running


def start_receiver_process(landing: Path, port: int, workers: int = 1) -> subprocess.Popen:
    """``fleet-pipeline push-receiver`` as its own process (its own session, so it can be killed alone)."""
    env = {**os.environ, "FLEET_TRACKSOLID_PUSH_TOKEN": TOKEN, "FLEET_PUSH_LANDING_DIR": str(landing)}
    return subprocess.Popen([sys.executable, "-m", "fleet_pipeline.cli", "push-receiver", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
