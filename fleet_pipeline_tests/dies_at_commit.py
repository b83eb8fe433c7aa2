"""A DuckDB connection whose process dies (SIGKILL) at COMMIT: every statement of the transaction
has run, and nothing of it is committed. The crash tests write through it in a child process."""

from __future__ import annotations

import os
import signal
from typing import Any


class DiesAtCommit:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper() == "COMMIT":
            print("killed at commit", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)
