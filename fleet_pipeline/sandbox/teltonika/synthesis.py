"""World truth as FOTA rows: devices, groups, tasks and batches with the fields each schema allows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.teltonika.identities import (
    API_USER_ID,
    BATCH_ID_BASE,
    COMPANY_CODE,
    COMPANY_CREATED,
    COMPANY_ID,
    COMPANY_NAME,
    FILE_ID_BASE,
    FINAL_TASK_STATUSES,
    FIRMWARE_PLATFORM,
    FIRMWARE_TASK,
    INACTIVE_AFTER,
    ONLINE_WITHIN,
    SEEN_AT_MAX_LOOKBACK,
    TASK_MESSAGES,
    TASK_STATUS_NAMES,
    TASK_STATUS_OF_OTA,
    batch_id_of,
    serial_of,
    task_id_of,
    task_status_id,
)
from fleet_pipeline.sandbox.teltonika.protocol import fmt
from fleet_pipeline.sandbox.world import rng

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Account, Campaign, Device, OtaAttempt


# OTA attempt statuses (firmware.OTA_STATUS) that leave a task in the device's queue.
_OTA_SENT, _OTA_DOWNLOADING, _OTA_SUCCEEDED = 1, 2, 3


# Which fields each schema allows (the spec's additionalProperties is false).
LIST_FIELDS = (
    "imei", "serial", "model", "spec_id", "platform_id", "current_configuration",
    "current_firmware", "description", "company_id", "group_id", "track", "first_login",
    "seen_at", "created_at", "updated_at", "state_timestamp", "created_by", "updated_by",
    "chip_id", "gsm_number", "gnss_version", "login_count", "parameter_collect", "last_sync",
    "iccid", "imsi", "ble_firmware", "sold_at", "shipment", "last_analytics_received_at",
    "product_code", "company_name", "group_name", "company", "group", "activity_status",
    "task_queue", "modem_version", "model_platform",
)
DETAIL_FIELDS = (
    "company", "dtb_version", "model_platform", "imei", "serial", "model", "spec_id",
    "current_configuration", "current_firmware", "description", "company_id", "group_id",
    "seen_at", "created_at", "updated_at", "created_by", "updated_by", "gsm_number",
    "gnss_version", "last_sync", "iccid", "imsi", "ble_firmware", "product_code",
    "company_name", "group_name", "group", "task_count", "activity_status", "task_queue",
    "modem_version", "bootloader_version",
)

SPEC_IDS = {"FMB920": 1, "FMC130": 4, "FMB140": 2}
CONFIG_FILES = {"FMB920": "FMB920_fleetco_2025-03.cfg", "FMC130": "FMC130_fleetco_can_2025-05.cfg",
                 "FMB140": "FMB140_fleetco_can_2025-05.cfg"}
UNCONFIGURED_SHARE = 0.05


def company_row() -> dict[str, Any]:
    created = fmt(COMPANY_CREATED)
    return {"code": COMPANY_CODE, "id": COMPANY_ID, "name": COMPANY_NAME, "company_id": None,
            "deleted_at": None, "created_at": created, "updated_at": created, "created_by": None,
            "updated_by": None}


def api_user_ref() -> dict[str, Any]:
    """The UserReference of the API user behind the token (creator of tasks and batches)."""
    return {"id": API_USER_ID, "company_id": COMPANY_ID}


def vehicle_description(d: Device) -> str:
    return f"{d.vehicle_name} ({d.vehicle_number})"


class TeltonikaRows:
    """The rows that read the World, the clock and the identities.

    A part of `TeltonikaApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def _static_sort_value(self, d: Device, sort: str) -> Any:
        if sort == "imei":
            return int(d.imei)
        if sort == "serial":
            return serial_of(self.world, d)
        if sort == "description":
            return vehicle_description(d)
        if sort == "model":
            return d.model
        if sort == "current_configuration":
            return self._configuration(d)
        if sort == "company_name":
            return COMPANY_NAME
        if sort == "group_name":
            return self._groups[self._group_of_account[d.account_id]].name
        return self._first_login(d)      # created_at

    def _first_login(self, d: Device) -> datetime:
        """The device's first connection to FOTA: its activation day, during working hours."""
        seconds = 7 * 3600 + rng.key(self.world.seed, "teltonika-first-login", d.index) % (10 * 3600)
        return datetime.combine(d.activation_date, datetime.min.time()) + timedelta(seconds=seconds)

    def _configuration(self, d: Device) -> str | None:
        share = rng.key(self.world.seed, "teltonika-config", d.index) / 2**64
        return None if share < UNCONFIGURED_SHARE else CONFIG_FILES.get(d.model, f"{d.model}.cfg")

    def _seen_at(self, d: Device, now: datetime) -> datetime | None:
        """When the platform last heard from the device, searched back week by week."""
        at = now
        oldest = max(datetime.combine(d.activation_date, datetime.min.time()),
                     now - SEEN_AT_MAX_LOOKBACK)
        while at >= oldest:
            fix = self.world.last_fix(d.imei, at)
            if fix is not None:
                return fix["received_at"]
            at -= INACTIVE_AFTER
        return None

    def _device_row(self, d: Device, now: datetime, fields: tuple[str, ...]) -> dict[str, Any]:
        first_login = self._first_login(d)
        seen = self._seen_at(d, now)
        attempts = [a for a in self.world.ota_attempts(d.imei) if a.sent_at <= now]
        upgraded = [t for a in attempts for t, status in a.history
                    if status == _OTA_SUCCEEDED and t <= now]
        queued = [a.status_at(now) for a in attempts]
        group_id = self._group_of_account.get(d.account_id)
        group = self._groups[group_id] if group_id is not None else None
        if seen is None or now - seen > INACTIVE_AFTER:
            activity = "Inactive"
        elif now - seen <= ONLINE_WITHIN:
            activity = "Online"
        else:
            activity = "Offline"
        digits = rng.key(self.world.seed, "teltonika-imsi", d.index) % 10**10
        row: dict[str, Any] = {
            "imei": int(d.imei),
            "serial": serial_of(self.world, d),
            "model": d.model,
            "spec_id": SPEC_IDS.get(d.model),
            "platform_id": None,
            "current_configuration": self._configuration(d),
            "current_firmware": self.world.firmware_at(d.imei, now),
            "description": vehicle_description(d),
            "company_id": COMPANY_ID,
            "group_id": group_id,
            "track": 0,
            "first_login": fmt(first_login),
            "seen_at": fmt(seen),
            "created_at": fmt(first_login),
            "updated_at": fmt(max([first_login, *upgraded])),
            "state_timestamp": None,
            "created_by": None,
            "updated_by": None,
            "chip_id": None,
            "gsm_number": d.sim_msisdn,
            "gnss_version": None,
            "login_count": None,
            "parameter_collect": None,
            "last_sync": None,
            "iccid": d.sim_iccid,
            "imsi": f"20801{digits:010d}",
            "ble_firmware": None,
            "sold_at": None,
            "shipment": None,
            "last_analytics_received_at": None,
            "product_code": None,
            "company_name": COMPANY_NAME,
            "group_name": group.name if group is not None else None,
            "company": company_row(),
            "activity_status": activity,
            "task_queue": ("Executing" if _OTA_DOWNLOADING in queued
                           else "Pending" if _OTA_SENT in queued else "Empty"),
            "modem_version": None,
            "model_platform": "Fmx",
            "task_count": len(attempts),
            "dtb_version": None,
            "bootloader_version": None,
        }
        if group is not None and group_id is not None:
            row["group"] = self._device_group(group_id, group)
        return {name: row[name] for name in fields if name in row}

    # -- groups ------------------------------------------------------------------------------
    def _group_created(self, group_id: int) -> datetime:
        seconds = rng.key(self.world.seed, "teltonika-group-created", group_id) % (60 * 86_400)
        return datetime(2023, 11, 7, 8, 0, 0) + timedelta(seconds=seconds)

    def _device_group(self, group_id: int, account: Account) -> dict[str, Any]:
        created = fmt(self._group_created(group_id))
        return {"id": group_id, "name": account.name, "company_id": COMPANY_ID,
                "firmware_file_id": None, "configuration_file_id": None, "deleted_at": None,
                "created_at": created, "updated_at": created, "created_by": API_USER_ID,
                "updated_by": None}

    def _group_row(self, group_id: int) -> dict[str, Any]:
        return {"company": company_row(), **self._device_group(group_id, self._groups[group_id])}

    # -- tasks and batches -------------------------------------------------------------------
    def _campaigns(self) -> dict[str, Campaign]:
        return {c.campaign_id: c for c in self.world.campaigns if c.platform == FIRMWARE_PLATFORM}

    def _sent_tasks(self, now: datetime) -> list[tuple[int, Device, OtaAttempt]]:
        """(task id, device, attempt) of every OTA attempt sent by now, by task id."""
        tasks = [(task_id_of(a, d.index), d, a)
                 for d in self._devices.values()
                 for a in self.world.ota_attempts(d.imei) if a.sent_at <= now]
        return sorted(tasks, key=lambda t: t[0])

    def _task_row(self, task_id: int, d: Device, a: OtaAttempt, now: datetime,
                  with_device: bool) -> dict[str, Any]:
        status = a.status_at(now)
        updated = a.last_update_at(now)
        assert status is not None and updated is not None, "a task exists once sent"
        started = next((t for t, s in a.history if s == _OTA_DOWNLOADING and t <= now), None)
        ended = status in (_OTA_SUCCEEDED, 4)
        status_id = TASK_STATUS_OF_OTA[status]
        campaign = self._campaigns()[a.campaign_id]
        row: dict[str, Any] = {
            "id": task_id,
            "device_imei": int(d.imei),
            "company_id": COMPANY_ID,
            "type": FIRMWARE_TASK,
            "attributes": None,
            "status_id": status_id,
            "attempt_count": 1,
            "execution_time": int((updated - started).total_seconds()) if ended and started else None,
            "created_at": fmt(a.sent_at),
            "updated_at": fmt(updated),
            "deleted_at": None,
            "file_id": self._file_id(campaign),
            "created_by": api_user_ref(),
            "batch_id": batch_id_of(self.world, a.campaign_id),
            "status_name": TASK_STATUS_NAMES[status_id],
            "company": company_row(),
            "file": self._file(campaign),
            "message": TASK_MESSAGES.get(status),
            "status_changed_at": fmt(updated),
            "verify_attempt_count": 0,
        }
        if with_device:
            group_id = self._group_of_account.get(d.account_id)
            row["device"] = {
                "imei": int(d.imei), "serial": serial_of(self.world, d), "model": d.model,
                "current_firmware": self.world.firmware_at(d.imei, now),
                "current_configuration": self._configuration(d), "description": vehicle_description(d),
                "company_id": COMPANY_ID, "group_id": group_id, "company_name": COMPANY_NAME,
                "group_name": self._groups[group_id].name if group_id is not None else None,
            }
        return row

    def _file_id(self, campaign: Campaign) -> int:
        return FILE_ID_BASE + batch_id_of(self.world, campaign.campaign_id) - BATCH_ID_BASE

    def _file(self, campaign: Campaign) -> dict[str, Any]:
        """The campaign's firmware file; its name is the file name of the campaign's URL."""
        created = fmt(datetime.combine(campaign.start_day, datetime.min.time()) - timedelta(days=1))
        return {"id": self._file_id(campaign), "name": campaign.url.rsplit("/", 1)[-1],
                "type": "firmware", "description": f"{campaign.model} {campaign.target_version}",
                "size": 1_400_000 + self._file_id(campaign) % 1_000 * 97, "company_id": COMPANY_ID,
                "created_at": created, "updated_at": created}

    def _batch_rows(self, now: datetime) -> list[dict[str, Any]]:
        """Every batch created by now, by id, with its tasks' statistics at now."""
        stats: dict[str, dict[int, int]] = {}
        updated: dict[str, datetime] = {}
        for _, _, a in self._sent_tasks(now):
            status_id = task_status_id(a, now)
            assert status_id is not None
            per_status = stats.setdefault(a.campaign_id, {})
            per_status[status_id] = per_status.get(status_id, 0) + 1
            seen = a.last_update_at(now)
            assert seen is not None
            updated[a.campaign_id] = max(updated.get(a.campaign_id, seen), seen)
        created_of = {a.batch_ids[0]: a.created_at for a in self.background_actions().values()
                      if a.type == "TaskBulkCreate" and a.batch_ids}
        rows = []
        for campaign in sorted(self._campaigns().values(), key=lambda c: c.campaign_id):
            batch_id = batch_id_of(self.world, campaign.campaign_id)
            created = created_of[batch_id]
            if created > now:
                continue
            per_status = stats.get(campaign.campaign_id, {})
            rows.append({
                "id": batch_id, "type": FIRMWARE_TASK, "source": "filter", "attributes": None,
                "objects": sum(per_status.values()),
                "objects_processed": sum(n for s, n in per_status.items() if s in FINAL_TASK_STATUSES),
                "company_id": COMPANY_ID, "created_by": api_user_ref(), "created_at": fmt(created),
                "updated_at": fmt(max(created, updated.get(campaign.campaign_id, created))),
                "approvable": 0, "verified_by": API_USER_ID, "task_type": FIRMWARE_TASK,
                "task_file_name": campaign.url.rsplit("/", 1)[-1],
                "file": {"id": self._file_id(campaign), "type": "firmware", "company_id": COMPANY_ID,
                         "name": campaign.url.rsplit("/", 1)[-1]},
                "task_stats": [{"status_id": s, "count": n} for s, n in sorted(per_status.items())],
            })
        return rows
