"""What the HTTP layer keeps of each vendor answer, and how an answer is served again without a call.

``HttpSession`` hands every answer its vendor ``check`` accepted to its ``recorder`` (a
:class:`Recorder`, attached for one step by the source layer) and, when it has a ``replay``, asks
that instead of the network. Both sides identify a call the same way, by :func:`request_key`: the
API method, the HTTP method, the URL's path (the host differs between sandbox runs and does not
choose the answer) and the request's parameters, query, form and JSON body, with the secrets
redacted and the fields the client declared volatile (a timestamp, a signature: new on every
attempt) left out. Headers are never kept: they carry the credentials and choose no answer here.

Secrets are redacted when the buffer is taken, not when an answer arrives: a token is registered
by the client after the answer that carries it has passed through here, so only at the end of the
step does ``Secrets`` know every value to scrub. Until then the buffer lives in memory only, each
body compressed (a day of track points is the largest answer set a step reads).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from fleet_pipeline.ingest.http.redaction import Secrets


@dataclass(frozen=True)
class Answer:
    """One vendor answer as archived: the call, its redacted request, the status, the body, when."""

    call: str
    http_method: str
    path: str
    # Canonical JSON of {"query", "form", "json"}: secrets redacted, volatile fields left out.
    request: str
    status: int
    body: str
    received_at: datetime

    @property
    def key(self) -> str:
        return answer_key(self.call, self.http_method, self.path, self.request)


def answer_key(call: str, http_method: str, path: str, request: str) -> str:
    return json.dumps([call, http_method.upper(), path, request], separators=(",", ":"))


def _without(fields: frozenset[str], value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _without(fields, v) for k, v in value.items() if str(k) not in fields}
    if isinstance(value, (list, tuple)):
        return [_without(fields, v) for v in value]
    return value


def _form(data: Any) -> Any:
    if data is None or isinstance(data, Mapping):
        return data
    raw = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
    return dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))


def request_record(data: Any, json_body: Any, params: Any, volatile: frozenset[str], secrets: Secrets) -> str:
    """The request as archived and looked up: canonical JSON, volatile fields out, secrets redacted."""
    parts = {"query": _without(volatile, params), "form": _without(volatile, _form(data)),
             "json": _without(volatile, json_body)}
    return secrets.redact(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str))


def path_of(url: str, secrets: Secrets) -> str:
    return secrets.redact(urllib.parse.urlsplit(url).path)


@dataclass(frozen=True)
class _Taken:
    call: str
    http_method: str
    url: str
    data: Any
    json_body: Any
    params: Any
    status: int
    body: bytes  # zlib-compressed
    received_at: datetime


class Recorder:
    """The answers of one step, in arrival order; the calls of a fan-out record from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: list[_Taken] = []

    def record(self, call: str, http_method: str, url: str, data: Any, json_body: Any, params: Any,
               status: int, body: bytes) -> None:
        taken = _Taken(call, http_method, url, data, json_body, params, status, zlib.compress(body, 1),
                       datetime.now(timezone.utc).replace(tzinfo=None))
        with self._lock:
            self._taken.append(taken)

    def __len__(self) -> int:
        with self._lock:
            return len(self._taken)

    def take(self, secrets: Secrets, volatile: frozenset[str]) -> Iterator[Answer]:
        """Every answer so far, redacted with what ``secrets`` knows now, one at a time; the buffer
        is emptied at once. Each answer is decompressed only when asked for and its compressed
        body let go then: a day of track points is hundreds of MB of JSON, never held whole."""
        with self._lock:
            taken, self._taken = self._taken, []
        taken.reverse()
        while taken:
            t = taken.pop()
            yield Answer(call=t.call, http_method=t.http_method.upper(), path=path_of(t.url, secrets),
                         request=request_record(t.data, t.json_body, t.params, volatile, secrets),
                         status=t.status,
                         body=secrets.redact(zlib.decompress(t.body).decode("utf-8", errors="replace")),
                         received_at=t.received_at)


class MissingAnswer(LookupError):
    """A replayed call has no archived answer: the code now asks what the original run did not."""


class Replay(Protocol):
    """Serves archived answers: ``(status, body)`` for a call, or raises :class:`MissingAnswer`."""

    def answer(self, key: str) -> tuple[int, bytes]: ...


class AnswerBook:
    """Archived answers by key; a key asked again gets the next answer recorded under it (a page read
    twice while the vendor's total moved), and the last one once they run out."""

    def __init__(self, answers: Iterable[Answer] = ()) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Answer]] = {}
        self._served: dict[str, int] = {}
        for answer in answers:
            self.add(answer)

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._by_key.setdefault(answer.key, []).append(answer)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._by_key

    def __len__(self) -> int:
        with self._lock:
            return sum(len(answers) for answers in self._by_key.values())

    def take(self, key: str) -> Answer | None:
        with self._lock:
            answers = self._by_key.get(key)
            if not answers:
                return None
            served = self._served.get(key, 0)
            self._served[key] = served + 1
            return answers[min(served, len(answers) - 1)]
