"""Tracksolid's documented limits and the batches and windows that keep every call inside them.

Sources: docs/vendor-apis/tracksolid-pro.md sections 1 and 5-6, docs/vendor-apis/FIELD-NOTES.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta

MAX_IMEIS_PER_CALL = 50
MAX_PAGE_SIZE = 100
TRACK_WINDOW = timedelta(days=7)
ALARM_WINDOW = timedelta(days=31)
ALARM_ROWS_REACHABLE = 1000
# Paging loops stop here even if a server keeps answering full pages: a guard against a server
# that ignores the offset, which would otherwise loop forever.
MAX_PAGES = 10_000


def batches(imeis: Iterable[str], size: int) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(str(i) for i in imeis))
    for start in range(0, len(unique), size):
        yield unique[start:start + size]


