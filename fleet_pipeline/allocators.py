"""How the native allocators of polars and pyarrow give memory back, set before either is loaded.

A source step reads a day in chunks and lets each chunk go before the next, so its peak should be
about one chunk above what it keeps. Both libraries keep freed memory for reuse instead:

* polars allocates with its own jemalloc, which returns freed pages to the system only after a
  decay of seconds; with chunks typed every fraction of a second the step holds every chunk it
  ever typed. Decay 0 returns them at once: the Navixy day of 1,000 devices peaked 44 MiB lower
  in one process (544 -> 500 MiB) and 100 MiB lower in its launched track-points step, for no
  measurable CPU (docs/performance.md).
* pyarrow (which writes the raw archive) allocates from a jemalloc or mimalloc pool of its own
  that keeps what the archive's row groups used; the system allocator gives it back.

Both are environment settings the libraries read when they start, so they are set here, when the
package is imported (before the code location imports polars), and only where the user has not
set them already. polars puts its own defaults in front of the jemalloc options it finds; jemalloc
reads them left to right, so these (later) win.
"""

from __future__ import annotations

import os

ALLOCATOR_SETTINGS = {
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def configure() -> None:
    for name, value in ALLOCATOR_SETTINGS.items():
        os.environ.setdefault(name, value)
