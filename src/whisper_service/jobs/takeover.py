"""Who holds a job: claiming what nobody holds, renewing and releasing what this
instance holds, and forgetting finished jobs.

A job nobody holds was either handed over (a draining instance cleared its owner) or
abandoned (its instance stopped renewing the lease: a crash, an OOM kill). Abandoned
ones count as interruptions; past the limit the job fails with that reason instead of
being retried forever (a job that kills every instance it lands on).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from whisper_service.jobs.execution import ended
from whisper_service.jobs.records import Job, JobError, JobStatus
from whisper_service.jobs.store import JobStore

log = structlog.get_logger(__name__)


def claim(
    job: Job, *, instance: str, lease_until: float, now: float, max_interruptions: int
) -> str | None:
    """Claim ``job`` for ``instance`` in place if nobody holds it; how it was free
    (``handed_over`` or ``abandoned``), or None when it is held or finished. An
    abandoned job past ``max_interruptions`` is ended failed instead."""
    if job.status.terminal:
        return None
    abandoned = job.instance is not None and (job.lease_expires_at or 0) < now
    if job.instance is not None and not abandoned:
        return None  # someone holds it
    if abandoned:
        job.interruptions += 1
        if job.interruptions > max_interruptions:
            # Which instance it was is the operator's to know (logged), not the caller's.
            log.error("job_interrupted_too_often", job_id=job.id, last_instance=job.instance)
            ended(job, JobStatus.FAILED, JobError(
                code="interrupted",
                message=f"the instance running this job stopped without handing it "
                f"over {job.interruptions} times; it is not retried again",
            ))  # fmt: skip
            return "abandoned"
    job.instance, job.lease_expires_at = instance, lease_until
    job.status = JobStatus.QUEUED
    return "abandoned" if abandoned else "handed_over"


def renewed(job: Job, instance: str, lease_until: float) -> Job | None:
    """``job`` with its lease extended, if ``instance`` still holds it."""
    if job.status.terminal or job.instance != instance:
        return None
    job.lease_expires_at = lease_until
    return job


def released(job: Job, instance: str) -> Job | None:
    """``job`` handed over by ``instance``: queued and unowned, so that any instance's
    next sweep claims it at once (no lease to wait out, no interruption counted)."""
    if job.status.terminal or job.instance != instance:
        return None
    job.status = JobStatus.QUEUED
    job.instance, job.lease_expires_at = None, None
    return job


async def expire_finished(store: JobStore, retention_seconds: float) -> None:
    """Delete jobs that finished more than ``retention_seconds`` ago (and record-less
    leftovers of that age)."""
    now = time.time()
    candidates = await asyncio.to_thread(store.expired_candidates, retention_seconds, now)
    for job_id in candidates:
        try:
            job = await asyncio.to_thread(store.get, job_id)
            if job is None or (
                job.status.terminal and (job.finished_at or 0) + retention_seconds < now
            ):
                await asyncio.to_thread(store.delete, job_id)
                log.info("job_expired", job_id=job_id)
        except Exception as exc:  # one job that cannot go must not keep the rest
            log.warning("job_expiry_failed", job_id=job_id, error=str(exc))
