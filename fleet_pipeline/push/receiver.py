"""The push receiver as an ASGI application (Starlette): check, land durably, then acknowledge.

Per request: a body over the size limit is 413 before it is read; a body that is no envelope is
400; a wrong token is 403 and a missing one 401 (an empty "verify" body without data gets the
acknowledgement: the vendor's dashboard must see success); every good item is landed and fsync'd
before the answer. A batch with some bad items lands its good ones and answers 400 listing the bad
ones by index: Jimi does not retry, so the good items are kept now, and a sender that does retry the
batch lands nothing twice that the load would count twice (the same items have the same msg_id).
Messages already landed by this process are not written again (`RecentIds`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleet_pipeline.push.landing import LandingFiles, LandingRecord, LandingWriter, utcnow
from fleet_pipeline.push.protocol import ACK, PUSH_PATHS, MalformedPush, decode_envelope, item_problem
from fleet_pipeline.sources.tracksolid.settings import DEFAULT_PUSH_MAX_BODY_BYTES

log = logging.getLogger("fleet_pipeline.push")

# How many msg_ids the process remembers to skip re-sent messages: 39 MiB measured for 200,000,
# over three minutes of pushes at 1,000 messages a second (a sender retries within seconds).
RECENT_IDS = 200_000


def _answer(status: int, msg: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": status, "msg": msg, **extra}, status_code=status)


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body declares {int(declared):,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body passed {limit:,} bytes while being read")
        chunks.append(chunk)
    return b"".join(chunks)


class RecentIds:
    """The msg_ids this process has landed or is landing, oldest forgotten first.

    A duplicate of a message whose fsync is still running waits for that fsync, so it is never
    acknowledged before the first copy is on disk.
    """

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, asyncio.Future[None] | None] = OrderedDict()

    def claim(self, msg_id: str) -> tuple[bool, asyncio.Future[None] | None]:
        """(True, None) when the id is new (now claimed); else (False, the fsync to wait for or None)."""
        if msg_id in self._ids:
            return False, self._ids[msg_id]
        self._ids[msg_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True, None

    def landing(self, msg_ids: list[str], commit: asyncio.Future[None]) -> None:
        for msg_id in msg_ids:
            self._ids[msg_id] = commit

    def landed(self, msg_ids: list[str]) -> None:
        for msg_id in msg_ids:
            if msg_id in self._ids:
                self._ids[msg_id] = None

    def forget(self, msg_ids: list[str]) -> None:
        for msg_id in msg_ids:
            self._ids.pop(msg_id, None)


class PushReceiver:
    """The request handling, with the landing writer and the token it checks."""

    def __init__(self, token: str, landing_root: Path, max_body_bytes: int = DEFAULT_PUSH_MAX_BODY_BYTES,
                 clock: Callable[[], datetime] = utcnow, files: LandingFiles | None = None) -> None:
        if not token:
            raise ValueError("the push receiver needs a token (FLEET_TRACKSOLID_PUSH_TOKEN)")
        self._token = token.encode()
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self.writer = LandingWriter(files or LandingFiles(landing_root), clock)
        self.recent = RecentIds()
        self.landed = 0  # items written by this process

    def _token_problem(self, token: str | None) -> JSONResponse | None:
        if token is None or token == "":
            return _answer(401, "tracksolid push: the request carries no token")
        if not hmac.compare_digest(token.encode(), self._token):
            return _answer(403, "tracksolid push: the token does not match FLEET_TRACKSOLID_PUSH_TOKEN")
        return None

    async def push(self, request: Request) -> Response:
        path = request.url.path
        try:
            body = await _read_body(request, self.max_body_bytes)
        except BodyTooLarge as exc:
            log.warning("tracksolid push %s: oversize body refused: %s", path, exc)
            return _answer(413, f"tracksolid push {path}: {exc}, the limit is {self.max_body_bytes:,} bytes")
        try:
            envelope = decode_envelope(body, request.headers.get("content-type", ""))
        except MalformedPush as exc:
            log.warning("tracksolid push %s: malformed body refused: %s", path, exc)
            return _answer(400, f"tracksolid push {path}: {exc}")
        if envelope.is_probe and envelope.token is None:
            return JSONResponse(ACK)
        refused = self._token_problem(envelope.token)
        if refused is not None:
            log.warning("tracksolid push %s: refused with HTTP %d (%d items): token missing or wrong", path,
                        refused.status_code, len(envelope.items))
            return refused
        received_at = self._clock()
        records, problems = [], []
        for index, item in enumerate(envelope.items):
            problem = item_problem(item)
            if problem is not None:
                problems.append({"index": index, "error": f"item {index} is {problem}"})
                continue
            for name, value in envelope.extra.items():
                item.setdefault(name, value)
            records.append(LandingRecord.of(path, item, received_at))
        try:
            await self._land(records)
        except OSError as exc:
            log.error("tracksolid push %s: landing write failed: %s", path, exc)
            return _answer(503, f"tracksolid push {path}: the landing write failed ({exc.strerror}); "
                                "nothing of this request is acknowledged, send it again")
        if problems:
            log.warning("tracksolid push %s: %d of %d items refused, %d landed; first: %s", path, len(problems),
                        len(envelope.items), len(records), problems[0]["error"])
            return _answer(400, f"tracksolid push {path}: {len(problems)} of {len(envelope.items)} items "
                                f"refused, {len(records)} landed", landed=len(records), refused=problems)
        return JSONResponse(ACK)

    async def _land(self, records: list[LandingRecord]) -> None:
        new, in_flight = [], []
        for record in records:
            is_new, commit = self.recent.claim(record.msg_id)
            if is_new:
                new.append(record)
            elif commit is not None:
                in_flight.append(commit)
        ids = [record.msg_id for record in new]
        if new:
            commit = asyncio.ensure_future(self.writer.land(new))
            self.recent.landing(ids, commit)
            try:
                await asyncio.shield(commit)
            except BaseException:
                self.recent.forget(ids)  # not on disk: a re-send must write them
                raise
            self.recent.landed(ids)
            self.landed += len(new)
        for commit in in_flight:
            await asyncio.shield(commit)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "landed": self.landed, "fsyncs": self.writer.fsyncs})


async def _unknown_path(request: Request, exc: Exception) -> Response:
    return _answer(404, f"tracksolid push: no push path {request.url.path!r}; the documented paths are "
                        + " ".join(PUSH_PATHS))


async def _wrong_method(request: Request, exc: Exception) -> Response:
    return _answer(405, f"tracksolid push {request.url.path}: {request.method} is not allowed, pushes are POST")


def create_app(receiver: PushReceiver) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await receiver.writer.start()
        try:
            yield
        finally:
            await receiver.writer.close()

    routes = [Route("/healthz", receiver.healthz, methods=["GET"])]
    routes += [Route(path, receiver.push, methods=["POST"]) for path in PUSH_PATHS]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: _unknown_path, 405: _wrong_method})
