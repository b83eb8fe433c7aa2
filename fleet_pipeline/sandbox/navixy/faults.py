"""Navixy-specific faults applied to finished answers: damaged, garbled and repeated rows.

`corrupt_rows_next`, `garble_first_row` and `repeat_first_row` of `NavixyKnobs` (SPEC.md, last
section); the generic faults (5xx, latency, broken bodies) are the shared server's.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.navixy.app import NavixyKnobs


def garble_first_row(method: str, payload: dict[str, Any], knobs: NavixyKnobs,
                     tracker_id: Any = None) -> None:
    """Apply `garble_first_row` and `repeat_first_row` to the first row of a list answer, once.

    With `first_row_tracker_id` set, only an answer to a call with that ``tracker_id`` counts.
    """
    rows = payload.get("list")
    if not isinstance(rows, list) or not rows:
        return
    wanted = knobs.first_row_tracker_id
    if wanted is not None and str(tracker_id) != str(wanted):
        return
    with knobs._lock:
        values = knobs.garble_first_row.pop(method, None)
        repeat = method in knobs.repeat_first_row
        knobs.repeat_first_row.discard(method)
    for path, value in (values or {}).items():
        *parents, name = path.split(".")
        node = rows[0]
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    if repeat:
        rows.insert(1, copy.deepcopy(rows[0]))


def corrupt_rows(method: str, payload: dict[str, Any], knobs: NavixyKnobs) -> None:
    """Damage rows like broken devices do: a bad IMEI check digit, or latitude 123.456."""
    if method == "tracker/get_states":
        rows = list(payload.get("states", {}).values())
    elif isinstance(payload.get("list"), list):
        rows = payload["list"]
    else:
        rows = [payload[k] for k in ("value", "state") if isinstance(payload.get(k), dict)]
    for row in rows:
        source = row.get("source")
        gps = row.get("gps")
        if isinstance(source, dict) and isinstance(source.get("device_id"), str):
            target = "imei"
        elif "lat" in row:
            target = "lat"
        elif isinstance(row.get("location"), dict):
            target = "location"
        elif isinstance(gps, dict) and isinstance(gps.get("location"), dict):
            target = "gps"
        else:
            continue
        if not knobs.consume("corrupt_rows_next"):
            return
        if target == "imei":
            imei = source["device_id"]
            source["device_id"] = imei[:-1] + str((int(imei[-1]) + 1) % 10)
        elif target == "lat":
            row["lat"] = 123.456
        elif target == "location":
            row["location"]["lat"] = 123.456
        else:
            gps["location"]["lat"] = 123.456
