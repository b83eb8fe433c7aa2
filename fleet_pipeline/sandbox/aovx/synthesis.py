"""World truth as AOVX rows: one OTA report row per attempt, as it stands at a given instant."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.aovx.protocol import epoch_ms, iso_ms

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import OtaAttempt, World


def ota_row(world: World, attempt: OtaAttempt, now: datetime) -> dict[str, Any]:
    """One report row as AOVX sends it, for an attempt as it stands at `now`."""
    updated = attempt.last_update_at(now)
    status = attempt.status_at(now)
    if updated is None or status is None:
        raise ValueError(f"attempt {attempt.attempt_id} was not sent yet at {now}")
    info = {"TYPE": attempt.upgrade_type, "MODE": attempt.upgrade_mode, "PROTOCOL": attempt.protocol,
            "VERSION": attempt.version, "URL": attempt.url}
    return {
        "terminalId": world.aovx_terminal_id(attempt.imei),
        "terminalNum": world.aovx_terminal_num(attempt.imei),
        "upgradeInfo": json.dumps(info, separators=(",", ":")),
        "status": status,
        "sendTime": iso_ms(attempt.sent_at),
        "sendTimestamp": epoch_ms(attempt.sent_at),
        "dateTime": iso_ms(updated),
        "mark": attempt.attempt_id,
        "dateTimestamp": epoch_ms(updated),
    }
