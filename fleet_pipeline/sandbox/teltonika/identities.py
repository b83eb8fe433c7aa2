"""Deterministic FOTA identities of World things: serials, group, batch and task ids, task
statuses, and the background actions that created the groups and batches."""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.teltonika.protocol import fmt
from fleet_pipeline.sandbox.world import rng

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Account, Device, OtaAttempt, World


VENDOR = "teltonika"
FIRMWARE_PLATFORM = "teltonika_fota"
GROUP_PLATFORM = "navixy"          # FOTA groups mirror the Navixy accounts the trackers live on
COMPANY_ID = 4_217
COMPANY_NAME = "FleetCo SAS"
COMPANY_CODE = "FLEETCO"
COMPANY_CREATED = datetime(2023, 11, 6, 9, 12, 44)
GROUP_ID_BASE = 31_000
API_USER_ID = 18_402              # the user behind the token: creator of groups and actions

ONLINE_WITHIN = timedelta(minutes=30)
INACTIVE_AFTER = timedelta(days=7)
SEEN_AT_MAX_LOOKBACK = timedelta(days=400)


FIRMWARE_TASK = "TxFirmware"
BATCH_ID_BASE = 70_000
FILE_ID_BASE = 80_000
# The World's OTA statuses (firmware.OTA_STATUS) as FOTA task statuses (TaskStatuses in the spec,
# whose enum values are literally "<name> = <id>").
TASK_STATUS_OF_OTA = {1: 0, 2: 1, 3: 2, 4: 5, -1: 5}
TASK_STATUS_NAMES = {0: "Pending = 0", 1: "Running = 1", 2: "Completed = 2", 3: "Completed with errors = 3",
                     4: "Cancelled = 4", 5: "Failed = 5", 6: "Expired = 6", 8: "Verifying = 8"}
FINAL_TASK_STATUSES = (2, 3, 4, 5, 6)
TASK_MESSAGES = {4: "Firmware update failed on the device.", -1: "The device did not accept the task."}


@dataclass(frozen=True)
class BackgroundAction:
    """One asynchronous job as GET /backgroundActions/{id} shows it."""

    id: str
    type: str
    status: str
    details: str | None
    result_file_id: int | None
    created_at: datetime
    updated_at: datetime
    batch_ids: tuple[int, ...] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "status": self.status, "company_id": COMPANY_ID,
            "details": self.details, "result_file_id": self.result_file_id,
            "created_by": API_USER_ID, "created_at": fmt(self.created_at),
            "updated_at": fmt(self.updated_at), "notify": False,
            "batch_ids": None if self.batch_ids is None else list(self.batch_ids),
            "structured_details": None,
        }


# -- deterministic identities -------------------------------------------------------------------
def serial_of(world: World, device: Device) -> int:
    """A 10-digit serial, unique per device index (Teltonika serials are 10-digit numbers)."""
    tail = rng.key(world.seed, "teltonika-serial", device.index) % 1_000
    return 1_100_000_000 + device.index * 1_000 + tail


def group_accounts(world: World) -> list[Account]:
    return [a for a in world.accounts if a.platform == GROUP_PLATFORM]


def group_id_of(world: World, account_id: str) -> int:
    """The FOTA group id of a Navixy account (its position in the World's account list)."""
    for n, account in enumerate(group_accounts(world), start=1):
        if account.account_id == account_id:
            return GROUP_ID_BASE + n
    raise KeyError(f"teltonika sandbox: no FOTA group for account {account_id!r}")


def batch_id_of(world: World, campaign_id: str) -> int:
    """The FOTA batch of a Teltonika campaign (the batch its TaskBulkCreate action created)."""
    ids = sorted(c.campaign_id for c in world.campaigns if c.platform == FIRMWARE_PLATFORM)
    try:
        return BATCH_ID_BASE + ids.index(campaign_id) + 1
    except ValueError:
        raise KeyError(f"teltonika sandbox: no Teltonika campaign {campaign_id!r}") from None


def task_id_of(attempt: OtaAttempt, device_index: int) -> int:
    """A task id: sent second * 100,000 + device index (see SPEC.md)."""
    return calendar.timegm(attempt.sent_at.timetuple()) * 100_000 + device_index


def task_status_id(attempt: OtaAttempt, now: datetime) -> int | None:
    """The FOTA task status of an attempt at `now`; None before it was sent."""
    status = attempt.status_at(now)
    return None if status is None else TASK_STATUS_OF_OTA[status]


def deterministic_uuid(seed: int, *parts: int | str) -> str:
    high = rng.key(seed, "teltonika-uuid-hi", *parts)
    low = rng.key(seed, "teltonika-uuid-lo", *parts)
    return str(uuid.UUID(bytes=(high << 64 | low).to_bytes(16, "big"), version=4))


def background_actions(world: World) -> list[BackgroundAction]:
    """Every background action of the sandbox company, created or not yet (filter by now).

    A `TaskBulkCreate` per Teltonika firmware campaign (how a FOTA rollout is started), early on
    the campaign's start day (it creates the campaign's batch), and a `DeviceExport` on the first of every month of 2026.
    """
    actions: list[BackgroundAction] = []
    campaigns = [c for c in world.campaigns if c.platform == FIRMWARE_PLATFORM]
    for n, campaign in enumerate(sorted(campaigns, key=lambda c: c.campaign_id)):
        minute = rng.key(world.seed, "teltonika-action-minute", campaign.campaign_id) % 120
        # before the first command of the rollout goes out (office hours start at 06:00)
        created = datetime.combine(campaign.start_day, datetime.min.time()) + timedelta(
            hours=4, minutes=minute)
        actions.append(BackgroundAction(
            id=deterministic_uuid(world.seed, "campaign", campaign.campaign_id),
            type="TaskBulkCreate", status="Completed",
            details=(f"Firmware update {campaign.from_version} -> {campaign.target_version} "
                     f"for {campaign.model} ({campaign.campaign_id})"),
            result_file_id=None, created_at=created,
            updated_at=created + timedelta(seconds=40 + minute),
            batch_ids=(BATCH_ID_BASE + n + 1,),
        ))
    for month in range(1, 13):
        created = datetime(2026, month, 1, 3, 15, 0)
        actions.append(BackgroundAction(
            id=deterministic_uuid(world.seed, "export", month),
            type="DeviceExport", status="Completed", details="Devices export (csv)",
            result_file_id=90_000 + month, created_at=created,
            updated_at=created + timedelta(seconds=95), batch_ids=None,
        ))
    return actions
