"""A process and its descendants, sampled from /proc: memory of the tree, CPU and life of each process.

A run launched by the ``dagster`` CLI is a tree: the CLI process (which loads the code location
and runs the executor) and one step process per step (each loads the code location again). No one
``getrusage`` figure gives the tree's memory, so a thread samples it every ``interval_s``: the
resident sizes summed over the live processes (the tree's footprint at that instant; its peak is
reported) and each process's own high-water mark (VmHWM) and CPU as last seen. A process that
lives less than one interval may be missed. Processes forked from one parent (a forkserver's step
processes) share its pages until they write them, and each one's resident size counts them all, so
the tree's footprint is also summed as PSS (each shared page divided among its sharers, from
``/proc/<pid>/smaps_rollup``), the figure that adds up; the CPU of a process is its last reading, so up to one
interval of it is lost at its end (the tree's CPU total comes from ``RUSAGE_CHILDREN`` instead).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class SeenProcess:
    pid: int
    ppid: int
    command: str
    first_seen_s: float
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds, resident MiB) of ``pid``, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, int(fields[21]) * PAGE_MIB


def _descendants(roots: Iterable[int], parents: dict[int, int]) -> set[int]:
    """``roots`` and every live process below them, given each live process's parent."""
    tree, grew = set(roots), True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _live_parents() -> dict[int, int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parents[int(entry.name)] = int(fields[1])
    return parents


def tree_cpu_s(root: int) -> float:
    """CPU seconds spent so far by ``root`` and its live descendants, each with the children it
    reaped (utime + stime + cutime + cstime): what a server spent on its connections that ended too."""
    total = 0.0
    for pid in _descendants([root], _live_parents()):
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(fields[index]) for index in (11, 12, 13, 14)) / TICKS
    return total


def _kib_field_mib(path: str, field: str) -> float:
    """A ``<field>: <n> kB`` line of a /proc file (``status``, ``smaps_rollup``), in MiB; 0 if gone."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _high_water_mark_mib(pid: int) -> float:
    return _kib_field_mib(f"/proc/{pid}/status", "VmHWM:")


def _pss_mib(pid: int) -> float:
    return _kib_field_mib(f"/proc/{pid}/smaps_rollup", "Pss:")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class ProcessTree:
    """Samples ``root`` (a pid, or several) and its descendants until :meth:`stop`."""

    def __init__(self, root: int | Iterable[int], interval_s: float = 0.1) -> None:
        self.roots = {root} if isinstance(root, int) else set(root)
        self.interval_s = interval_s
        self.seen: dict[int, SeenProcess] = {}
        self.peak_sum_rss_mib = 0.0
        self.peak_sum_pss_mib = 0.0
        self.samples = 0
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-tree-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def _sample(self) -> None:
        stats: dict[int, tuple[int, float, float]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _stat(int(entry.name))
                if found:
                    stats[int(entry.name)] = found
        tree = _descendants(self.roots, {pid: parent for pid, (parent, _, _) in stats.items()})
        total = total_pss = 0.0
        for pid in tree:
            if pid not in stats:
                continue
            parent, cpu, rss = stats[pid]
            total += rss
            total_pss += _pss_mib(pid)
            process = self.seen.get(pid)
            if process is None:
                process = self.seen[pid] = SeenProcess(pid, parent, _command(pid),
                                                       round(time.perf_counter() - self._started, 2))
            process.cpu_s = cpu
            process.peak_rss_mib = max(process.peak_rss_mib, rss, _high_water_mark_mib(pid))
        self.peak_sum_rss_mib = max(self.peak_sum_rss_mib, total)
        self.peak_sum_pss_mib = max(self.peak_sum_pss_mib, total_pss)
        self.samples += 1

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        processes = sorted(self.seen.values(), key=lambda p: p.first_seen_s)
        return {
            "peak_sum_rss_mib": round(self.peak_sum_rss_mib, 1),
            "peak_sum_pss_mib": round(self.peak_sum_pss_mib, 1),
            "max_process_peak_rss_mib": round(max((p.peak_rss_mib for p in processes), default=0.0), 1),
            "samples": self.samples,
            "processes": [{"pid": p.pid, "ppid": p.ppid, "command": p.command[:160], "first_seen_s": p.first_seen_s,
                           "peak_rss_mib": round(p.peak_rss_mib, 1), "cpu_s": round(p.cpu_s, 2)}
                          for p in processes],
        }


def subtree(processes: list[dict[str, Any]], root: int) -> list[dict[str, Any]]:
    """The processes of a :meth:`ProcessTree.stop` answer that are ``root`` or below it."""
    below = _descendants([root], {p["pid"]: p["ppid"] for p in processes})
    return [p for p in processes if p["pid"] in below]
