"""Job records: one protocol, two backends.

- ``DirectoryStore`` (this module): records as files on one machine, every change a
  compare-and-swap under the folder's lock (``objects.LocalObjects``);
- ``FirestoreStore`` (``firestore_store``): records as Firestore documents, every
  change a transaction.

Both treat a record past its ``expires_at`` as gone: Firestore's TTL policy deletes it
within a day or so, the directory store's own expiry at its next pass.

Directory layout (files of the job, ``files.JobFiles``, lie beside the record)::

    jobs/<id>/job.json    the record
    active/<id>           an empty marker while the job is not finished
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from whisper_service.jobs.objects import Conflict, LocalObjects
from whisper_service.jobs.records import Job, JobStatus

JOBS = "jobs/"
ACTIVE = "active/"
# A record update that keeps losing races gives up after this many tries.
MAX_UPDATE_TRIES = 50

Change = Callable[[Job], Job | None]
"""Applied to the current record; returns the new one, or None to leave it as it is."""


@dataclass(frozen=True)
class Additions:
    """What a delivery adds to its job's record: deliveries counted, units stored,
    progress. Additions commute, so instances working on one job at once need no
    transaction for them (``applied_to``; Firestore applies them as field transforms)."""

    deliveries: dict[str, int] = field(default_factory=dict)
    units_done: tuple[int, ...] = ()
    windows: int = 0
    audio_seconds: float = 0.0

    def applied_to(self, job: Job) -> Job:
        """``job`` with these additions made."""
        for piece, count in self.deliveries.items():
            job.deliveries[piece] = job.deliveries.get(piece, 0) + count
        job.units_done = [
            *job.units_done,
            *(n for n in self.units_done if n not in job.units_done),
        ]
        job.progress.windows_done += self.windows
        job.progress.audio_seconds_done = round(
            job.progress.audio_seconds_done + self.audio_seconds, 3
        )
        return job


class JobNotFound(Exception):
    """No record with that id (never created, or expired)."""


class JobStore(Protocol):
    """Where job records live."""

    location: str

    def create(self, job: Job) -> None:
        """Store a new record."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The record, or None (missing, expired, or not an id at all)."""
        ...

    def update(self, job_id: str, change: Change) -> Job:
        """Apply ``change`` atomically (retried on races); the record as it is after.
        Raises JobNotFound."""
        ...

    def add(self, job_id: str, additions: Additions) -> Job:
        """Apply ``additions`` atomically without a transaction; the record as it is
        after. Raises JobNotFound."""
        ...

    def recent(self, client: str | None, status: JobStatus | None, limit: int) -> list[Job]:
        """``client``'s newest jobs first, optionally only those in ``status``."""
        ...

    def unfinished(self) -> list[Job]:
        """Jobs not yet finished, oldest first (the local queue's restart recovery)."""
        ...


def expired(job: Job, now: float | None = None) -> bool:
    """Whether the record is past its retention."""
    if job.expires_at is None:
        return False
    return job.expires_at.timestamp() < (time.time() if now is None else now)


def expiry(retention_seconds: float) -> datetime:
    """The ``expires_at`` of a job that finishes now."""
    return datetime.fromtimestamp(time.time() + retention_seconds, UTC)


def valid_id(job_id: str) -> bool:
    """Ids come from URLs: only the shape new_job_id makes may reach a store."""
    body = job_id.removeprefix("job_")
    return (
        job_id.startswith("job_") and len(body) == 24 and all(c in "0123456789abcdef" for c in body)
    )


class DirectoryStore:
    """Records under a local directory (one machine; survives restarts)."""

    def __init__(self, objects: LocalObjects) -> None:
        self.objects = objects
        self.location = objects.location

    def create(self, job: Job) -> None:
        """The active marker first: an unfinished record is always found again."""
        self.objects.write(f"{ACTIVE}{job.id}", b"")
        self.objects.write(f"{JOBS}{job.id}/job.json", job.model_dump_json().encode(), 0)

    def get(self, job_id: str) -> Job | None:
        """The record, or None."""
        found = self._read(job_id)
        return None if found is None or expired(found[0]) else found[0]

    def _read(self, job_id: str) -> tuple[Job, int] | None:
        if not valid_id(job_id):
            return None
        found = self.objects.read(f"{JOBS}{job_id}/job.json")
        if found is None:
            return None
        return Job.model_validate_json(found[0]), found[1]

    def update(self, job_id: str, change: Change) -> Job:
        """Compare-and-swap ``change`` in, retrying on races."""
        for _ in range(MAX_UPDATE_TRIES):
            found = self._read(job_id)
            if found is None or expired(found[0]):
                raise JobNotFound(job_id)
            job, generation = found
            changed = change(job.model_copy(deep=True))
            if changed is None:
                return job
            changed.updated_at = time.time()
            try:
                self.objects.write(
                    f"{JOBS}{job_id}/job.json", changed.model_dump_json().encode(), generation
                )
            except Conflict:
                continue
            if changed.status.terminal:
                self.objects.delete(f"{ACTIVE}{job_id}")
            return changed
        raise Conflict(f"job {job_id} kept changing under {MAX_UPDATE_TRIES} updates")

    def add(self, job_id: str, additions: Additions) -> Job:
        """One machine has no contention to avoid: a compare-and-swap like any change."""
        return self.update(job_id, additions.applied_to)

    def recent(self, client: str | None, status: JobStatus | None, limit: int) -> list[Job]:
        """Ids sort by creation time: read backwards until ``limit`` match."""
        found: list[Job] = []
        for job_id in reversed(self.objects.folders(JOBS)):
            job = self.get(job_id)
            if job is None or job.client != client or (status and job.status is not status):
                continue
            found.append(job)
            if len(found) == limit:
                break
        return found

    def unfinished(self) -> list[Job]:
        """Jobs with an active marker."""
        jobs = (self.get(n.removeprefix(ACTIVE)) for n in self.objects.names(ACTIVE))
        return [j for j in jobs if j is not None and not j.status.terminal]

    def expire(self, now: float) -> list[str]:
        """Delete the folders of records past their retention; their ids."""
        gone = []
        for job_id in self.objects.folders(JOBS):
            found = self._read(job_id)
            if found is not None and expired(found[0], now):
                for name in self.objects.names(f"{JOBS}{job_id}/"):
                    self.objects.delete(name)
                gone.append(job_id)
        return gone
