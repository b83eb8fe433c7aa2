"""Vendor state every extracting process shares: rate-limit ledgers, cached tokens, session hashes.

A vendor's quota and its login limit belong to the account, not to a process or a machine. On one
machine the state lives in files in the cache folder (``limits.FileWindowLimiter``,
``shared_files.SharedJsonFile``), which every process there sees. With several machines (Celery
workers, Kubernetes pods) it must live where they all reach: FLEET_SHARED_STATE=redis://... puts
the same ledgers and caches in Redis, under the file's own name, with the same semantics:

* a ledger is a sorted set of call times, checked and extended by one Lua script (atomic in Redis,
  as the ``fcntl`` lock makes the file's read-check-write); the times are the caller's clock, like
  the file's, so machines must keep NTP time and the vendors' limits keep their safety margins
  below the documented quota (a skew of a few milliseconds moves a call across a window's edge);
* a cached token or hash is a JSON string, renewed under a Redis lock that expires, so a process
  killed while holding it blocks the others for at most :data:`RENEWAL_LOCK_S`.

Unset, every vendor uses the files exactly as before. Vendor clients ask :func:`window_limiter` and
:func:`shared_json` instead of building either kind themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from fleet_pipeline.ingest.http.limits import FileWindowLimiter, WindowLedger
from fleet_pipeline.ingest.shared_files import SharedJsonFile

logger = logging.getLogger(__name__)

# Every key this project writes starts with this, so one Redis can serve other applications too.
KEY_PREFIX = "fleet_pipeline:"
# A renewal is one login call (retries included: about a minute at worst); a holder killed in the
# middle frees the lock after this long.
RENEWAL_LOCK_S = 120.0

# KEYS[1]: the ledger (sorted set, score = call time, booked slots may lie ahead). ARGV: now, window
# seconds, max calls, minimum seconds between two calls, a unique member, "book" or "try". Returns
# the seconds until the slot taken ("book": always takes the next free slot; "try": takes a slot only
# if it is free now, else returns the wait and takes nothing), as a string: Redis would truncate a
# Lua number to an integer. The same rule as FileWindowLimiter (limits.next_slot), so both stores
# admit the same calls.
_RESERVE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local per_s = tonumber(ARGV[2])
local max_calls = tonumber(ARGV[3])
local min_interval = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per_s)
local count = redis.call('ZCARD', key)
local slot = now
if count > 0 then
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  slot = math.max(slot, tonumber(last[2]) + min_interval)
end
if count >= max_calls then
  local oldest = redis.call('ZRANGE', key, count - max_calls, count - max_calls, 'WITHSCORES')
  slot = math.max(slot, tonumber(oldest[2]) + per_s)
end
if slot > now and ARGV[6] ~= 'book' then
  return tostring(math.max(slot - now, 0.001))
end
redis.call('ZADD', key, slot, ARGV[5])
redis.call('PEXPIRE', key, math.ceil((slot - now + per_s) * 1000) + 1000)
return tostring(slot - now)
"""


class WindowLimiter(Protocol):
    """What the vendor clients use of a ledger: both stores provide it."""

    max_calls: int
    per_s: float

    def acquire(self) -> float: ...

    def try_acquire(self) -> float: ...

    def remaining(self) -> int: ...


class SharedJson(Protocol):
    """What the token and session caches use of a shared JSON object: both stores provide it."""

    def read(self) -> dict[str, Any] | None: ...

    def write(self, data: dict[str, Any]) -> None: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def redis_client(url: str) -> Any:
    """One client (one connection pool) per URL and process, made on first use."""
    with _clients_lock:
        if url not in _clients:
            import redis

            _clients[url] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return _clients[url]


def _configured_redis() -> Any | None:
    from fleet_pipeline import settings  # settings imports the vendor registry: read it late

    url = settings.shared_state_url()
    return redis_client(url) if url else None


class RedisWindowLimiter(WindowLedger):
    """At most ``max_calls`` calls in any ``per_s``-second window, across every machine using Redis."""

    def __init__(self, client: Any, name: str, max_calls: int, per_s: float, *, evenly: bool = False,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_calls < 1 or per_s <= 0:
            raise ValueError("RedisWindowLimiter needs max_calls >= 1 and per_s > 0")
        self.key = KEY_PREFIX + name
        self.max_calls = max_calls
        self.per_s = per_s
        self.min_interval_s = per_s / max_calls if evenly else 0.0  # as FileWindowLimiter's ``evenly``
        self._clock = clock
        self._sleep = sleep
        self._reserve_script = client.register_script(_RESERVE)
        self._client = client

    def _reserve(self) -> float:
        return self._update("try")

    def _book(self) -> float:
        return self._update("book")

    def _update(self, mode: str) -> float:
        now = self._clock()
        member = f"{now!r}:{uuid.uuid4().hex}"
        try:
            answer = self._reserve_script(keys=[self.key], args=[repr(now), repr(self.per_s), self.max_calls,
                                                                 repr(self.min_interval_s), member, mode])
        except Exception as exc:  # redis.RedisError, imported lazily
            raise SharedStateError(f"the rate-limit ledger {self.key} in Redis (FLEET_SHARED_STATE) "
                                   f"could not be updated: {type(exc).__name__}: {exc}") from exc
        return float(answer)

    def remaining(self) -> int:
        """Calls still allowed in the current window."""
        now = self._clock()
        used = self._client.zcount(self.key, f"({now - self.per_s!r}", "+inf")
        return self.max_calls - int(used)


class RedisJson:
    """A JSON object in Redis with a renewal lock: the Redis twin of ``SharedJsonFile``."""

    def __init__(self, client: Any, name: str) -> None:
        self.key = KEY_PREFIX + name
        self._client = client

    def read(self) -> dict[str, Any] | None:
        try:
            raw = self._client.get(self.key)
        except Exception as exc:  # redis.RedisError
            raise SharedStateError(f"the shared credential cache {self.key} in Redis (FLEET_SHARED_STATE) "
                                   f"could not be read: {type(exc).__name__}: {exc}") from exc
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            logger.warning("shared state %s in Redis is unreadable; ignoring it", self.key)
            return None
        return data if isinstance(data, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        self._client.set(self.key, json.dumps(data))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        lock = self._client.lock(self.key + ":lock", timeout=RENEWAL_LOCK_S, blocking_timeout=RENEWAL_LOCK_S)
        if not lock.acquire():
            raise SharedStateError(f"the renewal lock {self.key}:lock in Redis was held for more than "
                                   f"{RENEWAL_LOCK_S:.0f} s by another process")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # expired meanwhile: another process may hold it now
                lock.release()


class SharedStateError(RuntimeError):
    """The shared store (Redis, FLEET_SHARED_STATE) did not answer: no call is made without it."""


def window_limiter(path: Path, max_calls: int, per_s: float, *, evenly: bool = False,
                   clock: Callable[[], float] = time.time,
                   sleep: Callable[[float], None] = time.sleep) -> WindowLimiter:
    """The ledger named by ``path``: that file, or the Redis key of its name with FLEET_SHARED_STATE."""
    client = _configured_redis()
    if client is None:
        return FileWindowLimiter(path, max_calls, per_s, evenly=evenly, clock=clock, sleep=sleep)
    return RedisWindowLimiter(client, Path(path).stem, max_calls, per_s, evenly=evenly, clock=clock, sleep=sleep)


def shared_json(directory: Path, stem: str) -> SharedJson:
    """The cached object ``stem``: a file in ``directory``, or a Redis key with FLEET_SHARED_STATE."""
    client = _configured_redis()
    return SharedJsonFile(directory, stem) if client is None else RedisJson(client, stem)
