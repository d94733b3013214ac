"""Runs async jobs on this instance, and takes over the ones other instances dropped.

Ownership is a lease on the job's record: the instance that holds a job renews
``lease_expires_at`` every third of ``jobs_lease_seconds`` and after every batch. Every
change is a compare-and-swap on the record, so two instances never both own a job.

- A job submitted here is held here: queued until one of ``jobs_concurrency`` slots
  frees, then run batch by batch through the shared inference workers. After each
  batch the checkpoint (windows done, their segments) is written, then the record's
  progress: a job resumed anywhere restarts at the first window not checkpointed.
- Draining (SIGTERM): queued jobs are handed over at once (owner cleared, so any
  instance's next sweep takes them); running ones at the end of their batch, or when
  the drain runs out of time, whichever comes first.
- The sweep, every ``jobs_sweep_interval_seconds`` (and at startup), claims unfinished
  jobs nobody holds and deletes expired ones (``takeover``).
- Cancelling (DELETE) sets ``cancel_requested``; the holder sees it at its next record
  write (at most a third of the lease later), or at once when it is this instance.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import structlog

from whisper_service.config import Settings
from whisper_service.engines.base import (
    CancelToken,
    Engine,
)
from whisper_service.formats import MEDIA_TYPES, transcript_file
from whisper_service.jobs.execution import (
    UNEXPECTED,
    JobExecution,
    JobFailed,
    Lost,
    Stop,
    cancelled,
    finished,
    started,
)
from whisper_service.jobs.objects import Conflict
from whisper_service.jobs.records import Job, JobError, JobStatus, created_at_of
from whisper_service.jobs.store import JobNotFound, JobStore
from whisper_service.jobs.takeover import claim, expire_finished, released, renewed
from whisper_service.observability import metrics
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.memory import AudioMemory
from whisper_service.serving.scheduler import Scheduler
from whisper_service.storage import GcsStorage, StorageError

log = structlog.get_logger(__name__)

# Expired jobs are looked for on every this-many-th sweep: it lists every job.
EXPIRY_EVERY_SWEEPS = 10
# An active marker with no record this long after the id's time is left-over debris.
ORPHAN_MARKER_SECONDS = 600


@dataclass
class _Held:
    """A job this instance owns."""

    job_id: str
    token: CancelToken = field(default_factory=CancelToken)
    running: bool = False


class JobRunner:
    """The jobs side of one process."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        scheduler: Scheduler,
        storage: GcsStorage,
        engine: Callable[[], Engine | None],
        memory_critical: Callable[[], bool],
        audio_memory: AudioMemory,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.storage = storage
        self._engine = engine
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._held: dict[str, _Held] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self._execution = JobExecution(
            settings,
            store,
            scheduler,
            storage,
            instance=self.instance,
            lease_until=self._lease,
            draining=lambda: self.draining,
            memory_critical=memory_critical,
            audio_memory=audio_memory,
        )

    # --- what the API calls ---

    @property
    def full(self) -> bool:
        """Whether this instance holds as many jobs as it may."""
        return len(self._held) >= self.settings.jobs_max_active

    def _lease(self) -> float:
        return time.time() + self.settings.jobs_lease_seconds

    async def submit(self, job: Job, upload: IO[bytes] | None) -> Job:
        """Store a new job (and its uploaded input) and queue it here."""
        job.instance, job.lease_expires_at = self.instance, self._lease()
        await asyncio.to_thread(self.store.create, job, upload)
        self._hold(job.id)
        log.info("job_submitted", job_id=job.id, source=job.source.kind)
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask the holder of a running one to stop.
        Raises JobNotFound."""

        running_here = self._running_here(job_id)
        job = await asyncio.to_thread(
            self.store.update, job_id, lambda j: cancelled(j, running_here=running_here)
        )
        held = self._held.get(job_id)
        if held is not None and job.cancel_requested:
            held.token.cancel("cancelled")
        if job.status is JobStatus.CANCELLED:
            self._release_slot(job_id)
            metrics.JOBS_FINISHED.labels("cancelled").inc()
            log.info("job_cancelled", job_id=job_id)
        return job

    def stats(self) -> dict[str, object]:
        """For the health report: where jobs live and what this instance holds."""
        running = sum(1 for h in self._held.values() if h.running)
        return {
            "store": self.store.location,
            "instance": self.instance,
            "held": len(self._held),
            "running": running,
            "queued": len(self._held) - running,
            "max_active": self.settings.jobs_max_active,
            "draining": self.draining,
        }

    def _running_here(self, job_id: str) -> bool:
        held = self._held.get(job_id)
        return held is not None and held.running

    # --- lifecycle ---

    def start(self) -> None:
        """Start the job slots, the lease heartbeat and the sweep."""
        for number in range(self.settings.jobs_concurrency):
            self._tasks.append(asyncio.create_task(self._slot(), name=f"job-slot-{number}"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="job-heartbeat"))
        self._tasks.append(asyncio.create_task(self._sweeper(), name="job-sweep"))
        log.info("jobs_started", store=self.store.location, instance=self.instance)

    async def close(self) -> None:
        """Stop the background tasks (after a drain has handed jobs over)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def begin_drain(self) -> None:
        """Take nothing new; hand queued jobs over now, running ones after their batch."""
        self.draining = True
        queued = [h.job_id for h in self._held.values() if not h.running]
        for job_id in queued:
            await self._hand_over(job_id)
        if queued:
            log.info("jobs_handed_over", jobs=queued, state="queued")

    async def wait_idle(self) -> None:
        """Return once no job runs here."""
        await self._idle.wait()

    async def hand_over_all(self) -> None:
        """The drain ran out of time, or the process stops without one: stop what
        still runs and hand everything over from the last checkpoint (the batch in
        progress is lost, not the job)."""
        self.draining = True
        running = list(self._held.values())
        for held in running:
            held.token.cancel("shutting_down")
            await self._hand_over(held.job_id)
        if running:
            log.warning("jobs_handed_over", jobs=[h.job_id for h in running], state="running")

    # --- holding ---

    def _hold(self, job_id: str) -> None:
        self._held[job_id] = _Held(job_id)
        metrics.JOBS_HELD.labels("queued").inc()
        self._queue.put_nowait(job_id)

    def _release_slot(self, job_id: str) -> None:
        held = self._held.pop(job_id, None)
        if held is not None:
            metrics.JOBS_HELD.labels("running" if held.running else "queued").dec()
        if not any(h.running for h in self._held.values()):
            self._idle.set()

    async def _hand_over(self, job_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.update, job_id, lambda j: released(j, self.instance))
        except (JobNotFound, Conflict, StorageError) as exc:
            log.error("job_hand_over_failed", job_id=job_id, error=str(exc))
        self._release_slot(job_id)

    async def _heartbeat(self) -> None:
        """Renew the leases of held jobs; notice cancellation and lost ownership."""
        while True:
            await asyncio.sleep(self.settings.jobs_lease_seconds / 3)
            for held in list(self._held.values()):
                try:
                    job = await asyncio.to_thread(self.store.update, held.job_id, self._renew)
                except (JobNotFound, Conflict, StorageError) as exc:
                    log.warning("job_lease_renewal_failed", job_id=held.job_id, error=str(exc))
                    continue
                if job.status.terminal:
                    # Cancelled (elsewhere) while queued here: nothing left to do.
                    held.token.cancel("cancelled")
                    if not held.running:
                        self._release_slot(held.job_id)
                elif job.instance != self.instance:
                    log.warning("job_lost", job_id=held.job_id, now_held_by=job.instance)
                    held.token.cancel("lost")
                    if not held.running:
                        self._release_slot(held.job_id)
                elif job.cancel_requested:
                    held.token.cancel("cancelled")

    def _renew(self, job: Job) -> Job | None:
        return renewed(job, self.instance, self._lease())

    # --- taking over ---

    async def _sweeper(self) -> None:
        sweeps = 0
        while True:
            if self._engine() is not None and not self.draining:
                try:
                    await self.sweep(expire=sweeps % EXPIRY_EVERY_SWEEPS == 0)
                except (StorageError, Conflict, OSError) as exc:
                    log.error("job_sweep_failed", error=str(exc))
                sweeps += 1
            await asyncio.sleep(self.settings.jobs_sweep_interval_seconds if sweeps else 0.5)

    async def sweep(self, *, expire: bool) -> None:
        """Claim unfinished jobs nobody holds; delete expired ones."""
        for job_id in await asyncio.to_thread(self.store.active_ids):
            if self.full or self.draining:
                break
            if job_id not in self._held:
                await self._try_claim(job_id)
        if expire:
            await expire_finished(self.store, self.settings.jobs_retention_seconds)

    async def _try_claim(self, job_id: str) -> None:
        now = time.time()
        how: list[str] = []

        def change(job: Job) -> Job | None:
            how.clear()
            taken = claim(
                job,
                instance=self.instance,
                lease_until=self._lease(),
                now=now,
                max_interruptions=self.settings.jobs_max_interruptions,
            )
            if taken is None:
                return None
            how.append(taken)
            return job

        try:
            job = await asyncio.to_thread(self.store.update, job_id, change)
        except JobNotFound:
            # A marker without a record: its creation failed half-way, or is happening
            # right now on another instance; only an old one is debris.
            created = created_at_of(job_id)
            if created is not None and created < now - ORPHAN_MARKER_SECONDS:
                await asyncio.to_thread(self.store.delete, job_id)
            return
        except Conflict:
            return  # another instance won the race
        if not how:
            return
        metrics.JOBS_TAKEN_OVER.labels(how[0]).inc()
        if job.status is JobStatus.FAILED:
            metrics.JOBS_FINISHED.labels("failed").inc()
            log.error("job_failed", job_id=job_id, **job.error.model_dump() if job.error else {})
            return
        log.info("job_taken_over", job_id=job_id, how=how[0], interruptions=job.interruptions)
        self._hold(job_id)

    # --- running ---

    async def _slot(self) -> None:
        while True:
            job_id = await self._queue.get()
            held = self._held.get(job_id)
            if held is None or self.draining:
                continue
            held.running = True
            metrics.JOBS_HELD.labels("queued").dec()
            metrics.JOBS_HELD.labels("running").inc()
            self._idle.clear()
            token = request_id_var.set(job_id)
            try:
                with structlog.contextvars.bound_contextvars(job_id=job_id):
                    await self._run(held)
            except Exception:
                log.exception("job_runner_error", job_id=job_id)
            finally:
                request_id_var.reset(token)
                self._release_slot(job_id)

    async def _run(self, held: _Held) -> None:
        """Run one job to its end, or to a hand-over."""
        job_id = held.job_id
        try:
            job = await asyncio.to_thread(self.store.update, job_id, self._start)
            if job.status is not JobStatus.RUNNING or job.instance != self.instance:
                return  # cancelled while queued, or lost to another instance
            with telemetry.span("job", **{"whisper.job.id": job_id}):
                engine = self._engine()
                if engine is None:
                    raise Stop(None)  # not ready: let it wait for an instance that is
                result = await self._execution.transcribe(job, held.token, engine)
            output_uri = None
            if job.options.save_to_gcs:
                fmt = job.options.response_format
                content, extension = transcript_file(result, fmt)
                output_uri = await asyncio.to_thread(
                    self.storage.upload_text, job_id, extension, content, MEDIA_TYPES[fmt]
                )
            await asyncio.to_thread(self.store.write_result, job_id, result)
            await self._finish(job_id, JobStatus.SUCCEEDED, None, output_uri)
            log.info(
                "job_succeeded",
                audio_seconds=round(result.duration, 3),
                segments=len(result.segments),
                seconds=round(time.time() - (job.started_at or job.created_at), 3),
            )
        except Lost:
            log.warning("job_lost")
        except Stop as stop:
            if stop.status is None:
                await self._hand_over(job_id)
            else:
                await self._finish(job_id, stop.status, stop.error)
        except JobFailed as failed:
            await self._finish(job_id, JobStatus.FAILED, failed.error)
        except (StorageError, Conflict) as exc:
            # The store or GCS kept failing: hand over, the lease decides who goes on.
            log.error("job_storage_error", error=str(exc))
            await self._hand_over(job_id)
        except Exception:
            # A bug, or an input that breaks something unforeseen: retrying it on every
            # instance would only repeat it. End it, with the details in the log.
            log.exception("job_internal_error")
            await self._finish(job_id, JobStatus.FAILED, UNEXPECTED)

    def _start(self, job: Job) -> Job | None:
        return started(job, instance=self.instance, lease_until=self._lease())

    async def _finish(
        self,
        job_id: str,
        status: JobStatus,
        error: JobError | None,
        output_uri: str | None = None,
    ) -> None:
        def change(job: Job) -> Job | None:
            return finished(job, self.instance, status, error, output_uri)

        await asyncio.to_thread(self.store.update, job_id, change)
        metrics.JOBS_FINISHED.labels(status.value).inc()
        if error is not None:
            log.warning(f"job_{status.value}", code=error.code, reason=error.message)
