"""The two ways Tracksolid pages: a ``start_row`` offset, and ``page_no`` up to a reachable cap.

Alarms can be paged only to a fixed number of rows; a window that fills them is halved and both
halves read again, so no alarm is silently lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from fleet_pipeline.ingest.http import VendorAPIError
from fleet_pipeline.sources.tracksolid.errors import VENDOR
from fleet_pipeline.sources.tracksolid.limits import MAX_PAGES, MAX_PAGE_SIZE
from fleet_pipeline.sources.tracksolid.rows import extract_rows
from fleet_pipeline.sources.tracksolid.signing import format_time

logger = logging.getLogger("fleet_pipeline.sources.tracksolid")

Call = Callable[[str, dict[str, object]], dict[str, Any]]


def offset_pages(
    call: Call, method: str, params: dict[str, str]
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Pages by ``start_row`` (a row offset, always a multiple of ``page_size``)."""
    start_row = 0
    for _ in range(MAX_PAGES):
        payload = call(
            method, {**params, "start_row": start_row, "page_size": MAX_PAGE_SIZE}
        )
        page, total = extract_rows(method, payload)
        yield payload, page
        start_row += MAX_PAGE_SIZE
        if len(page) < MAX_PAGE_SIZE or (total is not None and start_row >= total):
            return
    raise VendorAPIError(VENDOR, method, f"more than {MAX_PAGES} full pages; paging ignored?")


def alarm_window(call: Call, cap: int, batch: list[str], begin: datetime, end: datetime
                 ) -> list[dict[str, Any]]:
    """Alarms of ``batch`` in ``[begin, end]``; ``cap`` is how many rows a query can reach."""
    method = "jimi.device.alarm.list"
    rows: list[dict[str, Any]] = []
    for page_no in range(1, max(cap // MAX_PAGE_SIZE, 1) + 1):
        payload = call(method, {
            "imeis": ",".join(batch),
            "begin_time": format_time(begin),
            "end_time": format_time(end),
            "page_no": page_no,
            "page_size": MAX_PAGE_SIZE,
        })
        page = extract_rows(method, payload)[0]
        rows.extend(page)
        if len(page) < MAX_PAGE_SIZE:
            return rows
    # Every reachable row was full: there may be more than the platform will page to.
    if end - begin <= timedelta(seconds=1):
        raise VendorAPIError(
            VENDOR, method,
            f"{cap}+ alarms within one second ({format_time(begin)}) for "
            f"{len(batch)} devices; cannot split the window further",
        )
    middle = begin + timedelta(seconds=int((end - begin).total_seconds()) // 2)
    logger.info(
        "tracksolid %s: %s rows reached between %s and %s; splitting at %s",
        method, cap, format_time(begin), format_time(end), format_time(middle),
    )
    return alarm_window(call, cap, batch, begin, middle) + alarm_window(call, cap, batch, middle, end)
