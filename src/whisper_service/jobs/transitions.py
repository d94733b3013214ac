"""Every change a job's record goes through, as pure functions for ``JobStore.update``:
each returns the changed record, or None to leave it as it is (so a transaction that
finds the job already finished writes nothing, and the caller knows it lost)."""

from __future__ import annotations

import time

from whisper_service.jobs.records import Job, JobError, JobStatus, Plan
from whisper_service.jobs.store import expiry

UNEXPECTED = JobError(
    code="internal_error",
    message="the job failed on an unexpected error; the service logs have the details under its id",
)
CANCELLED = JobError(code="cancelled", message="cancelled by a DELETE /jobs/{id} request")


def delivered(job: Job, piece: str) -> Job | None:
    """One more delivery of ``piece`` (``plan`` or a unit's number) is being worked
    on: count it, and mark the job running. None once the job has ended."""
    if job.status.terminal:
        return None
    job.deliveries[piece] = job.deliveries.get(piece, 0) + 1
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or time.time()
    return job


def planned(job: Job, plan: Plan) -> Job | None:
    """The plan is stored: the job's totals are known."""
    if job.status.terminal:
        return None
    job.units_total = len(plan.units)
    job.language = plan.language
    job.progress.audio_seconds_total = round(plan.duration, 3)
    job.progress.windows_total = sum(len(u.windows) for u in plan.units)
    return job


def complete(job: Job) -> bool:
    """Whether every unit is stored (the job is ready to merge)."""
    return job.units_total is not None and len(job.units_done) >= job.units_total


def ended(
    job: Job,
    status: JobStatus,
    error: JobError | None,
    retention_seconds: float,
    output_uri: str | None = None,
) -> Job | None:
    """``job`` in a final state; None if it already was in one."""
    if job.status.terminal:
        return None
    job.status, job.error, job.output_uri = status, error, output_uri
    job.finished_at = time.time()
    job.expires_at = expiry(retention_seconds)
    if status is JobStatus.SUCCEEDED and job.progress.audio_seconds_total is not None:
        job.progress.audio_seconds_done = job.progress.audio_seconds_total
        job.progress.windows_done = job.progress.windows_total or 0
    job.queued_by = None
    return job


def claimed(job: Job, previous: str | None, instance: str) -> Job | None:
    """The local queue of ``instance`` takes over a job whose process (``previous``) is
    gone; None if someone else did first."""
    if job.status.terminal or job.queued_by != previous:
        return None
    job.queued_by = instance
    return job
