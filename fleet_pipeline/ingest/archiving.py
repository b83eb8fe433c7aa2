"""A source step's side of the raw archive: record the answers of its client, or replay them.

A normal run attaches a :class:`~fleet_pipeline.ingest.http.recording.Recorder` to the client's
``HttpSession`` and, once the batch is validated and before its partitions are swapped, writes
what it recorded to the archive (``fleet_pipeline.ingest.archive``). A replay run
(``fleet-pipeline replay``, marked by :data:`REPLAY_OF_TAG`) attaches the archived answers of the
original run instead: the same extraction, typing, validation and loading code runs, and no
vendor is called (the session has no rate limiter to wait on, and a call with no archived answer
fails the step, naming the call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from fleet_pipeline import settings
from fleet_pipeline.ingest.archive import Archive, ArchiveReplay, ArchivedStep
from fleet_pipeline.ingest.http import HttpSession
from fleet_pipeline.ingest.http.recording import MissingAnswer, Recorder
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT

# The run a replay run re-plays (its id), and the archive root it reads.
REPLAY_OF_TAG = "fleet/replay_of"
REPLAY_ARCHIVE_TAG = "fleet/replay_archive"


def replay_of(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(run id, archive root) when a run's tags make it a replay run."""
    run_id, root = tags.get(REPLAY_OF_TAG), tags.get(REPLAY_ARCHIVE_TAG)
    return (run_id, root) if run_id and root else None


@dataclass
class StepRecording:
    """The answers one step's client is recording, and where they go."""

    vendor: str
    run_id: str
    session: HttpSession
    recorder: Recorder
    account: str = DEFAULT_ACCOUNT

    @classmethod
    def attach(cls, vendor: str, run_id: str, session: HttpSession, account: str | None = None) -> StepRecording:
        session.recorder = Recorder()
        return cls(vendor, run_id, session, session.recorder, account or DEFAULT_ACCOUNT)

    def write(self, root: str, table: str, days: Sequence[date], extracted_at: datetime) -> ArchivedStep:
        """Write what was recorded (redacted now, when every secret is known) into the archive at
        ``root`` before the swap, then apply the retention to this vendor and table."""
        archive = Archive(root)
        answers = self.recorder.take(self.session.secrets, self.session.volatile_fields)
        written = archive.write(self.vendor, table, days, self.run_id, extracted_at, answers, self.account)
        archive.prune(self.vendor, table, datetime.now(timezone.utc).date(), settings.archive_retention_days())
        return written


def attach_replay(session: HttpSession, vendor: str, table: str, run_id: str, root: str,
                  account: str | None = None) -> datetime:
    """Serve ``session``'s calls from ``run_id``'s archived answers of ``account``; the time the
    original step extracted at (what its snapshot stamps and time windows were taken from)."""
    archive = Archive(root)
    account = account or DEFAULT_ACCOUNT
    own = [step for step in archive.steps(vendor, table, account) if step.run_id == run_id]
    if not own:
        owner = "" if account == DEFAULT_ACCOUNT else f" account {account!r}"
        raise MissingAnswer(f"{vendor}{owner} {table}: the archive {root} has no file of run {run_id}")
    session.replay = ArchiveReplay(archive, vendor, run_id, account)
    session.limiter = None  # nothing is sent: no vendor quota to respect
    return archive.read(own[0].path).extracted_at
