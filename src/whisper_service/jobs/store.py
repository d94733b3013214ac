"""Job records, inputs, checkpoints and results in an ObjectStore.

Layout under the store's root::

    jobs/<id>/job.json         the record (compare-and-swap on every change)
    jobs/<id>/input            an uploaded file, until the job ends
    jobs/<id>/checkpoint.json  the window plan and the windows done so far
    jobs/<id>/result.json      the finished transcription
    active/<id>                an empty marker while the job is not finished

The ``active/`` markers let an instance find unfinished jobs by listing a handful of
names instead of reading every record; ids sort by creation time, so expiry needs
only names too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from whisper_service.engines.base import Transcription
from whisper_service.jobs.objects import Conflict, ObjectStore
from whisper_service.jobs.records import TRANSCRIPTION, Checkpoint, Job, created_at_of

JOBS = "jobs/"
ACTIVE = "active/"
# A record update that keeps losing races gives up after this many tries.
MAX_UPDATE_TRIES = 20


class JobNotFound(Exception):
    """No record with that id (never created, or expired and deleted)."""


class JobStore:
    """Typed access to jobs kept in ``objects``."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @property
    def location(self) -> str:
        """Where the objects are (a directory or gs:// prefix), for logs and docs."""
        return self.objects.location

    def create(self, job: Job, upload: IO[bytes] | None = None) -> None:
        """Store the input (if uploaded), the active marker, then the record: a record
        that exists always has what it needs to run."""
        if upload is not None:
            self.objects.upload(f"{JOBS}{job.id}/input", upload)
        self.objects.write(f"{ACTIVE}{job.id}", b"")
        self.objects.write(f"{JOBS}{job.id}/job.json", job.model_dump_json().encode(), 0)

    def get(self, job_id: str) -> Job | None:
        """The record, or None."""
        found = self._read(job_id)
        return None if found is None else found[0]

    def _read(self, job_id: str) -> tuple[Job, int] | None:
        if not _valid_id(job_id):
            return None
        found = self.objects.read(f"{JOBS}{job_id}/job.json")
        if found is None:
            return None
        return Job.model_validate_json(found[0]), found[1]

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply ``change`` to the current record and compare-and-swap it in, retrying
        on races. ``change`` returns the new record, or None to leave it as it is.
        Raises JobNotFound."""
        for _ in range(MAX_UPDATE_TRIES):
            found = self._read(job_id)
            if found is None:
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
            if changed.status.terminal and not job.status.terminal:
                self.objects.delete(f"{ACTIVE}{job_id}")
                self.objects.delete(f"{JOBS}{job_id}/input")
                self.objects.delete(f"{JOBS}{job_id}/checkpoint.json")
            return changed
        raise Conflict(f"job {job_id} kept changing under {MAX_UPDATE_TRIES} updates")

    def active_ids(self) -> list[str]:
        """Jobs not yet finished, oldest first."""
        return [n.removeprefix(ACTIVE) for n in self.objects.names(ACTIVE)]

    def ids(self) -> list[str]:
        """Every job kept, oldest first."""
        return self.objects.folders(JOBS)

    def open_input(self, job_id: str, target: IO[bytes]) -> bool:
        """Copy an uploaded input into ``target``; False if it is gone."""
        return self.objects.download(f"{JOBS}{job_id}/input", target)

    def read_checkpoint(self, job_id: str) -> Checkpoint | None:
        """Where a resumed job starts from, if it got anywhere."""
        found = self.objects.read(f"{JOBS}{job_id}/checkpoint.json")
        return None if found is None else Checkpoint.model_validate_json(found[0])

    def write_checkpoint(self, job_id: str, checkpoint: Checkpoint) -> None:
        """Record the windows done so far."""
        self.objects.write(f"{JOBS}{job_id}/checkpoint.json", checkpoint.model_dump_json().encode())

    def write_result(self, job_id: str, result: Transcription) -> None:
        """Keep the finished transcription."""
        self.objects.write(f"{JOBS}{job_id}/result.json", TRANSCRIPTION.dump_json(result))

    def read_result(self, job_id: str) -> Transcription | None:
        """The finished transcription, if there is one."""
        found = self.objects.read(f"{JOBS}{job_id}/result.json") if _valid_id(job_id) else None
        return None if found is None else TRANSCRIPTION.validate_json(found[0])

    def delete(self, job_id: str) -> None:
        """Remove everything of a job."""
        for name in self.objects.names(f"{JOBS}{job_id}/"):
            self.objects.delete(name)
        self.objects.delete(f"{ACTIVE}{job_id}")

    def expired_candidates(self, retention_seconds: float, now: float) -> list[str]:
        """Ids created more than ``retention_seconds`` ago (from their names alone);
        whether each finished long enough ago is the caller's to check."""
        out = []
        for job_id in self.ids():
            created = created_at_of(job_id)
            if created is not None and created + retention_seconds < now:
                out.append(job_id)
        return out


def _valid_id(job_id: str) -> bool:
    """Ids come from URLs: only the shape new_job_id makes may reach the store."""
    body = job_id.removeprefix("job_")
    return (
        job_id.startswith("job_") and len(body) == 24 and all(c in "0123456789abcdef" for c in body)
    )
