"""A push receiver for tests: in this process on a uvicorn thread, or as the CLI's own process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from fleet_pipeline.push.receiver import PushReceiver, create_app

TOKEN = "test-push-token-1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the push receiver exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the push receiver at {url} did not answer /healthz within {timeout_s}s")


@contextmanager
def receiver_thread(landing: Path, max_body_bytes: int = 1024 * 1024, **kwargs) -> Iterator[tuple[str, PushReceiver]]:
    """A receiver served by uvicorn on a thread of this process: (base URL, the receiver object)."""
    receiver = PushReceiver(TOKEN, landing, max_body_bytes, **kwargs)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(receiver), host="127.0.0.1", port=port, log_level="warning",
                                           loop="asyncio", http="httptools", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, receiver
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def start_receiver_process(landing: Path, port: int, workers: int = 1) -> subprocess.Popen:
    """``fleet-pipeline push-receiver`` as its own process (its own session, so it can be killed alone)."""
    env = {**os.environ, "FLEET_TRACKSOLID_PUSH_TOKEN": TOKEN, "FLEET_PUSH_LANDING_DIR": str(landing)}
    return subprocess.Popen([sys.executable, "-m", "fleet_pipeline.cli", "push-receiver", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
