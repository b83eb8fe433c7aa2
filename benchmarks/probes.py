"""Timing probes wrapped around the pipeline's own functions, for one stage process.

The benchmark must measure the code path the assets really take, without changing the package, so
it wraps four module attributes for the life of a stage process (never in the test suite):

* ``fleet_pipeline.ingest.http.json``: every response body the clients decode goes through
  ``json.loads`` there. Its time is the *bare parse limit* of the extract stage (the same JSON
  parsed with no typing or validation), its byte count what came over the wire.
* ``typed_frame`` as each vendor's ``assets`` module imported it: vendor rows -> typed frame.
* ``fleet_pipeline.ingest.loader.split_valid``: pandera validation.
* ``fleet_pipeline.ingest.loader.replace_partitions``: the atomic partition swap. After each call the probe
  also times the *bare load limit*: the same Arrow data registered in a scratch DuckDB file and
  inserted with a plain ``CREATE TABLE AS`` / ``INSERT`` (no transaction bookkeeping, no delete,
  no rejects). The scratch time is excluded from the stage's own figures (``overhead_s``).

Steps run one at a time (in-process executor), so measurements made before a table's
``replace_partitions`` belong to that table, also those of the threads that make a step's API
calls concurrently; they are kept pending and attached to it when it is written. A probe whose target no longer
exists (the package changed) is reported as missing instead of failing the benchmark.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

TIMED_KEYS = ("json_parse", "typing", "validate", "load", "arrow_convert", "bare_insert")


@dataclass
class TableProbe:
    """What one raw table cost, in wall seconds (``*_s``) and thread CPU seconds (``*_cpu_s``)."""

    rows_loaded: int = 0
    rows_typed: int = 0
    json_bytes: int = 0
    json_docs: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in TIMED_KEYS})
    cpu_seconds: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in TIMED_KEYS})

    def add(self, key: str, wall: float, cpu: float) -> None:
        self.seconds[key] += wall
        self.cpu_seconds[key] += cpu

    def absorb(self, other: TableProbe) -> None:
        self.rows_typed += other.rows_typed
        self.json_bytes += other.json_bytes
        self.json_docs += other.json_docs
        for key in TIMED_KEYS:
            self.add(key, other.seconds[key], other.cpu_seconds[key])


def wrap(module: Any, attribute: str, make: Callable[[Callable[..., Any]], Callable[..., Any]],
         missing: list[str]) -> None:
    """Replace ``module.attribute`` by ``make(original)``; a target that no longer exists (the
    package changed) is added to ``missing`` instead of failing the benchmark."""
    original = getattr(module, attribute, None)
    if original is None:
        missing.append(f"{module.__name__}.{attribute}")
        return
    setattr(module, attribute, make(original))


class _Timer:
    def __enter__(self) -> _Timer:
        self.wall, self.cpu = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.thread_time() - self.cpu


class _TimedJson:
    """Stands in for the ``json`` module inside ``fleet_pipeline.ingest.http``: times ``loads``."""

    def __init__(self, probes: Probes) -> None:
        self._probes = probes

    def loads(self, text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        with _Timer() as timer:
            value = json.loads(text, *args, **kwargs)
        with self._probes.lock:  # the calls of one step run on several threads
            pending = self._probes.pending
            pending.add("json_parse", timer.wall, timer.cpu)
            pending.json_bytes += len(text)
            pending.json_docs += 1
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


class Probes:
    """Installs the wrappers; ``tables`` holds the measurements per ``schema.table``."""

    def __init__(self, bare_database: str) -> None:
        self.tables: dict[str, TableProbe] = {}
        self.pending = TableProbe()
        self.missing: list[str] = []
        self.overhead_s = 0.0
        self.lock = threading.Lock()
        self._bare = duckdb.connect(bare_database)
        self._bare_tables: set[str] = set()

    # -- installation ----------------------------------------------------------------------------
    def install(self, vendor_asset_modules: list[str]) -> None:
        http = importlib.import_module("fleet_pipeline.ingest.http.session")
        if hasattr(http, "json"):
            http.json = _TimedJson(self)
        else:
            self.missing.append("fleet_pipeline.ingest.http.session.json")
        loader = importlib.import_module("fleet_pipeline.ingest.loader")
        self._wrap(loader, "split_valid", self._validate)
        self._wrap(loader, "replace_partitions", self._replace)
        for name in vendor_asset_modules:
            self._wrap(importlib.import_module(name), "typed_frame", self._typed)

    def _wrap(self, module: Any, attribute: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        wrap(module, attribute, make, self.missing)

    # -- wrappers --------------------------------------------------------------------------------
    def _typed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def typed_frame(*args: Any, **kwargs: Any) -> Any:
            with _Timer() as timer:
                frame = original(*args, **kwargs)
            self.pending.add("typing", timer.wall, timer.cpu)
            self.pending.rows_typed += frame.height
            return frame

        return typed_frame

    def _validate(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def split_valid(*args: Any, **kwargs: Any) -> Any:
            with _Timer() as timer:
                split = original(*args, **kwargs)
            self.pending.add("validate", timer.wall, timer.cpu)
            return split

        return split_valid

    def _replace(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def replace_partitions(conn: Any, table: Any, frame: Any, *args: Any, **kwargs: Any) -> Any:
            with _Timer() as timer:
                result = original(conn, table, frame, *args, **kwargs)
            probe = self.tables.setdefault(str(table), TableProbe())
            probe.absorb(self.pending)
            self.pending = TableProbe()
            probe.add("load", timer.wall, timer.cpu)
            probe.rows_loaded += frame.height
            started = time.perf_counter()
            self._bare_insert(probe, str(table).replace(".", "__"), frame)
            self.overhead_s += time.perf_counter() - started
            return result

        return replace_partitions

    def _bare_insert(self, probe: TableProbe, name: str, frame: Any) -> None:
        with _Timer() as convert:
            arrow = frame.to_arrow()
        probe.add("arrow_convert", convert.wall, convert.cpu)
        with _Timer() as insert:
            self._bare.register("incoming", arrow)
            if name in self._bare_tables:
                self._bare.execute(f'INSERT INTO "{name}" SELECT * FROM incoming')
            else:
                self._bare.execute(f'CREATE TABLE "{name}" AS SELECT * FROM incoming')
                self._bare_tables.add(name)
            self._bare.unregister("incoming")
        probe.add("bare_insert", insert.wall, insert.cpu)

    # -- results ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._bare.close()

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": {name: asdict(probe) for name, probe in sorted(self.tables.items())},
            "missing_probes": self.missing,
            "overhead_s": round(self.overhead_s, 3),
        }
