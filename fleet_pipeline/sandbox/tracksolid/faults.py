"""Tracksolid-specific faults applied to finished answers: rows damaged like broken devices do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.tracksolid.app import TracksolidKnobs


# Methods whose rows are events or positions (never the device inventory the client walks).
EVENT_METHODS = frozenset({
    "jimi.device.track.mileage", "jimi.device.track.list", "jimi.open.platform.report.parking",
    "jimi.device.alarm.list", "jimi.user.device.location.list", "jimi.device.location.get",
})


def corrupt_rows(payload: dict[str, Any], knobs: TracksolidKnobs) -> None:
    """Damage data rows the way broken devices and platform bugs do, so rejects can be tested.

    Defects rotate: an IMEI with a wrong check digit, a latitude off the globe, an end before
    its start; each row gets the first defect its fields allow.
    """
    rows = payload.get("result")
    if not isinstance(rows, list):
        rows = (payload.get("data") or {}).get("rows") if isinstance(payload.get("data"), dict) else None
    for index, row in enumerate(rows or []):
        if not isinstance(row, dict):
            continue
        defects = []
        if "imei" in row:
            defects.append("imei")
        if "lat" in row:
            defects.append("lat")
        if "startTime" in row and "endTime" in row:
            defects.append("order")
        if not defects or not knobs.consume("corrupt_rows_next"):
            continue
        defect = defects[index % len(defects)]
        if defect == "imei":
            imei = str(row["imei"])
            row["imei"] = imei[:-1] + str((int(imei[-1]) + 1) % 10)
        elif defect == "lat":
            row["lat"] = 123.456
        else:
            row["startTime"], row["endTime"] = row["endTime"], row["startTime"]
