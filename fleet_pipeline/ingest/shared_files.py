"""Small JSON files that every process on the machine shares: cached tokens and session hashes.

Vendors limit how often a client may log in (Tracksolid: one token a minute; Navixy: a logins
limit), so credentials are cached across processes and runs. Reads are lock-free because files are
replaced atomically (a reader never sees half a file); renewals hold an exclusive ``fcntl`` lock so
that one process talks to the vendor and the others adopt its result. The files hold live
credentials: mode 0600 in a 0700 folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def cache_key(*parts: str) -> str:
    """A short stable file-name key for (base URL, account, ...) without exposing them."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class SharedJsonFile:
    def __init__(self, directory: Path, stem: str) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.path = self.directory / f"{stem}.json"
        self.lock_path = self.directory / f"{stem}.lock"

    def read(self) -> dict[str, Any] | None:
        """The stored object, or None when absent or unreadable (then the caller renews)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("shared file %s is unreadable; ignoring it", self.path)
            return None
        return data if isinstance(data, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{self.stem}-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
