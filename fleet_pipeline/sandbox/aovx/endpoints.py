"""The AOVX routes: queryTerminalOtaReport (POST, paged) and terminal/list (GET, sandbox only).

SPEC.md states the filters, paging and errors of each.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fleet_pipeline.sandbox.aovx.protocol import (
    DEFAULT_PAGE_SIZE,
    PLATFORM,
    AovxError,
    integer_param,
    moment_param,
)
from fleet_pipeline.sandbox.aovx.synthesis import ota_row
from fleet_pipeline.sandbox.messages import Request

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, OtaAttempt


class Endpoints:
    """The OTA report and the terminal list.

    A part of `AovxApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    # -- queryTerminalOtaReport --------------------------------------------------------------
    def ota_report(self, request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise AovxError(500, "Required request body is missing or is not a JSON object")
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            raise AovxError(500, "ids must not be empty")
        if not all(isinstance(i, str) for i in ids):
            raise AovxError(500, "ids must be a list of strings")
        if self.knobs.max_ids is not None and len(ids) > self.knobs.max_ids:
            raise AovxError(500, f"at most {self.knobs.max_ids} ids per query")
        start, end = moment_param(body, "startTime"), moment_param(body, "endTime")
        if end < start:
            raise AovxError(500, "endTime must not be before startTime")
        page_num = integer_param(body, "pageNum", 1)
        page_size = integer_param(body, "pageSize", DEFAULT_PAGE_SIZE)
        if page_num < 1:
            raise AovxError(500, "pageNum must be at least 1")
        if not 1 <= page_size <= self.knobs.page_size_cap:
            raise AovxError(500, f"pageSize must be between 1 and {self.knobs.page_size_cap}")

        now = self.now()
        kept_from = now - timedelta(days=self.knobs.retention_days)
        found: list[tuple[datetime, str, OtaAttempt, str]] = []
        for terminal_id in dict.fromkeys(ids):
            try:
                imei = self.world.imei_for_terminal(terminal_id)
            except KeyError:
                continue
            for attempt in self.world.ota_attempts(imei):
                seen = attempt.last_update_at(now)
                if seen is not None and start <= seen < end and seen >= kept_from:
                    found.append((seen, attempt.attempt_id, attempt, terminal_id))
        found.sort(key=lambda row: row[:2])
        pages = -(-len(found) // page_size)
        if self.knobs.reasonable_paging and pages:
            page_num = min(page_num, pages)
        chunk = found[(page_num - 1) * page_size: page_num * page_size]
        return {
            "code": 200,
            "message": "Operation succeeded",
            "data": {
                "total": str(len(found)),
                "size": str(pages),
                "data": [ota_row(self.world, attempt, now) for _, _, attempt, _ in chunk],
            },
        }

    # -- terminal/list (sandbox only) --------------------------------------------------------
    def terminal_list(self, request: Request) -> dict[str, Any]:
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        today = self.now().date()
        devices = sorted((d for d in self._aovx_devices() if d.activation_date <= today), key=lambda d: d.imei)
        rows = [
            {"terminalId": self.world.aovx_terminal_id(d.imei),
             "terminalNum": self.world.aovx_terminal_num(d.imei),
             "imei": d.imei}
            for d in devices
        ]
        if "pageNum" in params or "pageSize" in params:
            page_num = integer_param(params, "pageNum", 1)
            page_size = integer_param(params, "pageSize", 10)
            if page_num < 1 or not 1 <= page_size <= self.knobs.page_size_cap:
                raise AovxError(500, f"pageNum must be >= 1 and pageSize between 1 and {self.knobs.page_size_cap}")
            shown = rows[(page_num - 1) * page_size: page_num * page_size]
        else:
            shown = rows
        return {"total": len(rows), "rows": shown, "code": 200, "msg": "查询成功"}

    def _aovx_devices(self) -> list[Device]:
        with self._lock:
            if self._devices is None:
                self._devices = [d for d in self.world.devices if d.firmware_platform == PLATFORM]
            return self._devices
