"""Where a stage process's memory peaks: RSS at the boundaries of the load's phases, per table.

Wraps the same functions as ``benchmarks.probes`` (``typed_frame`` in the vendor's assets module,
``loader.split_valid``, ``loader.replace_partitions``) for the life of one stage process. At each
boundary it reads the process's resident size (VmRSS) and its high-water mark since the previous
boundary (VmHWM, reset after each read by writing 5 to ``/proc/self/clear_refs``), so every peak
is charged to the phase it happened in:

* ``extract``: from the previous boundary until typing starts (calls, JSON, vendor rows);
* ``typing``: ``typed_frame`` (vendor rows -> typed polars frame);
* ``validate``: ``split_valid`` (pandera) and what runs between typing and it;
* ``write``: ``replace_partitions`` (the DuckDB swap) and what runs between validation and it;
* ``after``: from the last table's write to the end of the stage (the run's end). What runs
  between one table's write and the next table's typing is charged to the next table's extract.

A table read in chunks (one-tracker calls typed as they complete) passes the extract and typing
boundaries once per chunk; its figures are the largest over its chunks. Resetting the high-water
mark means VmHWM no longer gives the process's peak: :meth:`peak_mib` is the largest of the
readings instead. Threads of one step write concurrently only within extraction, so a boundary
read from any thread belongs to the step's one table being loaded.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.probes import wrap

PHASES = ("extract", "typing", "validate", "write", "after")


def _status_mib() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, kib = line.split()[:2]
            values[key] = int(kib) / 1024
    return values["VmRSS:"], values["VmHWM:"]


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class MemoryPhases:
    """RSS per (table, phase): the resident size at the phase's end and the peak within it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table = "(before the first table)"
        self.figures: dict[str, dict[str, dict[str, float]]] = {}
        self.order: list[str] = []
        self.missing: list[str] = []
        self._peak = _status_mib()[1]
        self._resets = _reset_high_water_mark()
        self._pending_table: str | None = None

    def boundary(self, phase: str, table: str | None = None) -> None:
        """The phase ``phase`` of the current table (or of ``table``) ends now."""
        with self.lock:
            rss, hwm = _status_mib()
            self._peak = max(self._peak, hwm)
            name = table or self.table
            if name not in self.figures:
                self.figures[name] = {}
                self.order.append(name)
            seen = self.figures[name].setdefault(phase, {"rss_end_mib": 0.0, "peak_mib": 0.0})
            seen["rss_end_mib"] = max(seen["rss_end_mib"], round(rss, 1))
            seen["peak_mib"] = max(seen["peak_mib"], round(hwm, 1))
            if self._resets:
                _reset_high_water_mark()

    def peak_mib(self) -> float:
        with self.lock:
            return round(max(self._peak, _status_mib()[1]), 1)

    # -- installation ----------------------------------------------------------------------------
    def install(self, vendor_asset_module: str, table_of_columns: Callable[[Any], str | None]) -> None:
        """``table_of_columns(columns)``: the table a ``typed_frame`` call's column spec belongs to
        (typing is the first boundary that knows which table the rows are for)."""
        loader = importlib.import_module("fleet_pipeline.ingest.loader")
        self._wrap(importlib.import_module(vendor_asset_module), "typed_frame", lambda original: self._typed(
            original, table_of_columns))
        self._wrap(loader, "split_valid", lambda original: self._around(original, "validate"))
        self._wrap(loader, "replace_partitions", self._replace)

    def _wrap(self, module: Any, attribute: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        wrap(module, attribute, make, self.missing)

    def _typed(self, original: Callable[..., Any], table_of_columns: Callable[[Any], str | None]) -> Callable[..., Any]:
        def typed_frame(rows: Any, columns: Any, *args: Any, **kwargs: Any) -> Any:
            table = table_of_columns(columns) or self.table
            # What ran since the previous table's write is charged to this table's extraction: it
            # is mostly this table's calls (the previous step's metadata is small).
            self.table = table
            self.boundary("extract")
            frame = original(rows, columns, *args, **kwargs)
            self.boundary("typing")
            return frame

        return typed_frame

    def _around(self, original: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.boundary(phase)
            return result

        return wrapped

    def _replace(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def replace_partitions(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.boundary("write")
            return result

        return replace_partitions

    def as_dict(self) -> dict[str, Any]:
        self.boundary("after")
        return {"tables": {name: self.figures[name] for name in self.order}, "peak_mib": self.peak_mib(),
                "high_water_mark_reset": self._resets, "missing_probes": self.missing}


def describe(figures: dict[str, Any]) -> list[str]:
    """One line per table: peak within each phase and the resident size at its end (MiB)."""
    lines = [f"  {'table':<28} " + " ".join(f"{phase:>17}" for phase in PHASES),
             f"  {'':<28} " + " ".join(f"{'peak / end MiB':>17}" for _ in PHASES)]
    for table, phases in figures["tables"].items():
        cells = []
        for phase in PHASES:
            seen = phases.get(phase)
            cells.append(f"{seen['peak_mib']:>8.0f} / {seen['rss_end_mib']:>6.0f}" if seen else f"{'-':>17}")
        lines.append(f"  {table:<28} " + " ".join(cells))
    where = max(((table, phase, seen["peak_mib"]) for table, phases in figures["tables"].items()
                 for phase, seen in phases.items()), key=lambda found: found[2], default=None)
    if where:
        lines.append(f"  the process peaks at {figures['peak_mib']:.0f} MiB, in {where[0]}, phase {where[1]}"
                     + ("" if figures.get("high_water_mark_reset") else
                        " (the high-water mark could not be reset: peaks are cumulative)"))
    return lines
