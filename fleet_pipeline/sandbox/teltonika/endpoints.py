"""The FOTA WEB API routes: devices, groups, background actions, tasks and batches (GET only).

SPEC.md states the filters, sorts and paging of each route.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.teltonika.identities import (
    API_USER_ID,
    COMPANY_ID,
    COMPANY_NAME,
    FIRMWARE_PLATFORM,
    FIRMWARE_TASK,
    BackgroundAction,
    background_actions,
    batch_id_of,
    serial_of,
    task_id_of,
    task_status_id,
)
from fleet_pipeline.sandbox.teltonika.protocol import (
    BATCH_SORTS,
    DEVICE_SORTS,
    GROUP_SORTS,
    TASK_SORTS,
    ApiError,
    Query,
    invalid,
    nulls_first_sorted,
    paged,
    path_int,
)
from fleet_pipeline.sandbox.teltonika.synthesis import (
    DETAIL_FIELDS,
    LIST_FIELDS,
    vehicle_description,
)

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device


class Endpoints:
    """GET /devices, /groups, /backgroundActions/{id}, /tasks and /batches (lists and items).

    A part of `TeltonikaApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    # -- devices -----------------------------------------------------------------------------
    def _visible_devices(self, now: datetime) -> list[Device]:
        return [d for imei, d in sorted(self._devices.items()) if self._first_login(d) <= now]

    def _devices_page(self, request: Request, query: Query, key: str | None,
                      method: str) -> Response:
        now = self.now()
        devices = self._visible_devices(now)
        imeis = query.ints("imei")
        if imeis is not None:
            wanted = set(imeis)
            devices = [d for d in devices if int(d.imei) in wanted]
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            devices = []
        groups = query.ints("group_id")
        if groups is not None:
            wanted_groups = set(groups)
            devices = [d for d in devices if self._group_of_account.get(d.account_id) in wanted_groups]
        models = query.strings("model")
        if models is not None:
            devices = [d for d in devices if d.model in models]
        platforms = query.strings("model_platform")
        if platforms is not None and "Fmx" not in platforms:
            devices = []
        configurations = query.strings("current_configuration")
        if configurations is not None:
            devices = [d for d in devices if self._configuration(d) in configurations]
        search = query.string("query")
        if search:
            needle = search.lower()
            devices = [d for d in devices if needle in d.imei or needle in str(serial_of(self.world, d))
                       or needle in vehicle_description(d).lower()]
        sort = query.choice("sort", DEVICE_SORTS, "imei")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        firmwares = query.strings("current_firmware")
        # Static filters and sorts page before any per-device work; firmware, seen_at and
        # updated_at need every candidate's state at `now` (still only the candidates).
        if firmwares is None and sort in ("imei", "serial", "description", "model",
                                          "current_configuration", "company_name",
                                          "group_name", "created_at"):
            devices = nulls_first_sorted(devices, lambda d: self._static_sort_value(d, sort), descending)
            window = devices[(page - 1) * per_page: page * per_page]
            rows = [self._device_row(d, now, LIST_FIELDS) for d in window]
            total = len(devices)
        else:
            everything = [self._device_row(d, now, LIST_FIELDS) for d in devices]
            if firmwares is not None:
                everything = [r for r in everything if r["current_firmware"] in firmwares]
            everything = nulls_first_sorted(everything, lambda r: r[sort], descending)
            rows = everything[(page - 1) * per_page: page * per_page]
            total = len(everything)
        return Response.json(paged(request, query, rows, total, page, per_page),
                             vendor_method=method)

    def _device(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        imei = path_int(key, "deviceImei")
        now = self.now()
        device = self._devices.get(imei)
        if device is None or self._first_login(device) > now:
            raise ApiError(404, "Device not found.")
        return Response.json(self._device_row(device, now, DETAIL_FIELDS), vendor_method=method)

    def _groups_page(self, request: Request, query: Query, key: str | None,
                     method: str) -> Response:
        ids = sorted(self._groups)
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            ids = []
        # No group carries a firmware or configuration file, so asking for one matches nothing.
        for name in ("firmware_file_id", "configuration_file_id"):
            if query.ints(name) is not None:
                ids = []
        search = query.string("query")
        if search:
            needle = search.lower()
            ids = [g for g in ids if needle in str(g) or needle in self._groups[g].name.lower()]
        sort = query.choice("sort", GROUP_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        rows = [self._group_row(g) for g in ids]
        column = {"id": "id", "name": "name", "created_at": "created_at"}.get(sort)
        rows = nulls_first_sorted(rows, (lambda r: r[column]) if column else
                       (lambda r: COMPANY_NAME if sort == "company_name" else None), descending)
        window = rows[(page - 1) * per_page: page * per_page]
        return Response.json(paged(request, query, window, len(rows), page, per_page),
                             vendor_method=method)

    def _group(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        group_id = path_int(key, "groupId")
        if group_id not in self._groups:
            raise ApiError(404, "Group not found.")
        return Response.json(self._group_row(group_id), vendor_method=method)

    # -- background actions ------------------------------------------------------------------
    def background_actions(self) -> dict[str, BackgroundAction]:
        """Every action by id, created or not (built on first use: it reads the campaigns)."""
        with self._lock:
            if self._actions is None:
                self._actions = {a.id: a for a in background_actions(self.world)}
            return self._actions

    def _action(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        try:
            action_id = str(uuid.UUID(key or ""))
        except ValueError:
            raise invalid("backgroundActionId must be a uuid.") from None
        action = self.background_actions().get(action_id)
        if action is None or action.created_at > self.now():
            raise ApiError(404, "Background action not found.")
        return Response.json(action.as_json(), vendor_method=method)

    def _tasks_page(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        now = self.now()
        tasks = self._sent_tasks(now)
        for name, value in (("id", lambda t: t[0]), ("device_imei", lambda t: int(t[1].imei)),
                            ("batch_id", lambda t: batch_id_of(self.world, t[2].campaign_id)),
                            ("status_id", lambda t: task_status_id(t[2], now)),
                            ("group_id", lambda t: self._group_of_account.get(t[1].account_id))):
            wanted = query.ints(name)
            if wanted is not None:
                tasks = [t for t in tasks if value(t) in wanted]
        # one company and one API user create every task
        for name, only in (("company_id", COMPANY_ID), ("created_by", API_USER_ID)):
            wanted = query.ints(name)
            if wanted is not None and only not in wanted:
                tasks = []
        types = query.strings("type")
        if types is not None and FIRMWARE_TASK not in types:
            tasks = []
        for name, strings in (("model", lambda d: d.model),
                              ("current_firmware", lambda d: self.world.firmware_at(d.imei, now)),
                              ("current_configuration", self._configuration)):
            wanted_strings = query.strings(name)
            if wanted_strings is not None:
                tasks = [t for t in tasks if strings(t[1]) in wanted_strings]
        search = query.string("query")
        if search:
            tasks = [t for t in tasks if search in t[1].imei]
        sort = query.choice("sort", TASK_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        sort_value = {
            "device_imei": lambda t: (int(t[1].imei), t[0]),
            "created_at": lambda t: (t[2].sent_at, t[0]),
            "status_changed_at": lambda t: (t[2].last_update_at(now), t[0]),
        }.get(sort, lambda t: t[0])   # type, company_name, created_by are one value: id breaks ties
        tasks = sorted(tasks, key=sort_value, reverse=descending)
        window = tasks[(page - 1) * per_page: page * per_page]
        rows = [self._task_row(*t, now, with_device=True) for t in window]
        return Response.json(paged(request, query, rows, len(tasks), page, per_page), vendor_method=method)

    def _task(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        task_id = path_int(key, "taskId")
        now = self.now()
        index = task_id % 100_000
        device = self.world.devices[index] if 0 <= index < len(self.world.devices) else None
        if device is not None and device.firmware_platform == FIRMWARE_PLATFORM:
            for attempt in self.world.ota_attempts(device.imei):
                if attempt.sent_at <= now and task_id_of(attempt, index) == task_id:
                    return Response.json(self._task_row(task_id, device, attempt, now, with_device=False),
                                         vendor_method=method)
        raise ApiError(404, "Task not found.")

    def _batches_page(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        rows = self._batch_rows(self.now())
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            rows = []
        types = query.strings("task_type")
        if types is not None and FIRMWARE_TASK not in types:
            rows = []
        sort = query.choice("sort", BATCH_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        rows = sorted(rows, key=lambda r: (r[sort], r["id"]), reverse=descending)
        window = rows[(page - 1) * per_page: page * per_page]
        return Response.json(paged(request, query, window, len(rows), page, per_page), vendor_method=method)

    def _batch(self, request: Request, query: Query, key: str | None, method: str) -> Response:
        batch_id = path_int(key, "batchId")
        found = next((r for r in self._batch_rows(self.now()) if r["id"] == batch_id), None)
        if found is None:
            raise ApiError(404, "Batch not found.")
        return Response.json(found, vendor_method=method)
