"""The jobs side of one process: accepting and cancelling jobs, and doing the
deliveries that reach it (pushed by Pub/Sub, or from the local queue).

Nothing here owns a job. The record's transactions decide every change, the queue
redelivers what an instance dropped, and any instance may do any delivery. This
process only bounds how many deliveries it works on at once
(``WHISPER_JOBS_CONCURRENCY``; more wait for a slot) and stops them when it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import IO

import structlog

from whisper_service.capacity.memory import AudioMemory
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import Settings
from whisper_service.engines.base import CancelToken, Engine
from whisper_service.jobs import transitions
from whisper_service.jobs.dispatch import Delivery, LocalQueue, Queue, Retry
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.inputs import JobFailed
from whisper_service.jobs.objects import Conflict
from whisper_service.jobs.records import Job, JobError, JobStatus
from whisper_service.jobs.store import Additions, DirectoryStore, JobNotFound, JobStore
from whisper_service.jobs.work import JobWork, Stopped
from whisper_service.observability import metrics
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry
from whisper_service.storage import GcsStorage, StorageError, StorageUnavailable

log = structlog.get_logger(__name__)

# The directory store deletes expired jobs this often (Firestore's TTL policy does it
# there).
EXPIRY_INTERVAL_SECONDS = 600.0
READY_POLL_SECONDS = 0.5
# Dead-lettered message ids remembered, to act on each once.
DEAD_LETTERS_REMEMBERED = 10_000


class Jobs:
    """Jobs for one process."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        files: JobFiles,
        queue: Queue,
        scheduler: Scheduler,
        storage: GcsStorage,
        engine: Callable[[], Engine | None],
        *,
        memory_critical: Callable[[], bool],
        audio_memory: AudioMemory,
    ) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.queue = queue
        self._engine = engine
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.draining = False
        self._slots = asyncio.Semaphore(settings.jobs_concurrency)
        self._running: dict[str, set[CancelToken]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._dead_letters: OrderedDict[str, None] = OrderedDict()  # message ids handled
        self.work = JobWork(
            settings,
            store,
            files,
            queue,
            scheduler,
            storage,
            draining=lambda: self.draining,
            memory_critical=memory_critical,
            audio_memory=audio_memory,
        )

    # --- what the API calls ---

    async def submit(self, job: Job, upload: IO[bytes] | None) -> Job:
        """Store the input and the record, then publish the job's plan. A job that
        cannot be published is ended failed and the caller gets 503."""
        if isinstance(self.queue, LocalQueue):
            job.queued_by = self.instance
        if upload is not None:
            await asyncio.to_thread(self.files.put_input, job.id, upload)
        await asyncio.to_thread(self.store.create, job)
        try:
            await self.queue.publish([Delivery(job_id=job.id)])
        except StorageUnavailable:
            error = JobError(code="job_store_unavailable", message="the job could not be queued")
            await self.work.merger.end(job.id, JobStatus.FAILED, error)
            raise
        log.info("job_submitted", job_id=job.id, source=job.source.kind, queue=self.queue.name)
        return job

    async def cancel(self, job_id: str) -> Job:
        """End the job cancelled; its units stop at their next window (at once here).
        Raises JobNotFound."""
        await self.work.merger.end(job_id, JobStatus.CANCELLED, transitions.CANCELLED)
        for token in self._running.get(job_id, ()):
            token.cancel("cancelled")
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def stats(self) -> dict[str, object]:
        """For the health report."""
        return {
            "store": self.store.location,
            "files": self.files.location,
            "queue": self.queue.name,
            "instance": self.instance,
            "running": sum(len(t) for t in self._running.values()),
            "concurrency": self.settings.jobs_concurrency,
            "unit_audio_seconds": round(self.work.unit_seconds(), 1),
            "draining": self.draining,
        }

    # --- deliveries ---

    async def handle(self, delivery: Delivery) -> None:
        """Do one delivery: returns to ack it, raises Retry to have it redelivered."""
        engine = self._engine()
        if engine is None:
            raise Retry("the model is not loaded yet")
        async with self._slots:
            if self.draining:
                raise Retry("draining")
            token = CancelToken()
            self._running.setdefault(delivery.job_id, set()).add(token)
            self._idle.clear()
            metrics.JOB_DELIVERIES_RUNNING.inc()
            context = request_id_var.set(delivery.job_id)
            outcome = "retry"
            try:
                with (
                    structlog.contextvars.bound_contextvars(
                        job_id=delivery.job_id, piece=delivery.piece
                    ),
                    telemetry.span(
                        "job.delivery",
                        **{"whisper.job.id": delivery.job_id, "whisper.job.piece": delivery.piece},
                    ),
                ):
                    outcome = await self._do(delivery, engine, token)
            except Retry as retry:
                log.warning("job_delivery_retry", job_id=delivery.job_id, piece=delivery.piece,
                            reason=retry.reason)  # fmt: skip
                raise
            finally:
                request_id_var.reset(context)
                metrics.JOB_DELIVERIES_RUNNING.dec()
                metrics.JOB_DELIVERIES.labels(_kind(delivery), outcome).inc()
                tokens = self._running.get(delivery.job_id, set())
                tokens.discard(token)
                if not tokens:
                    self._running.pop(delivery.job_id, None)
                if not self._running:
                    self._idle.set()

    async def _do(self, delivery: Delivery, engine: Engine, token: CancelToken) -> str:
        try:
            if delivery.unit is None:  # one plan per job: a transaction that starts it
                job = await asyncio.to_thread(
                    self.store.update,
                    delivery.job_id,
                    lambda j: transitions.delivered(j, delivery.piece),
                )
            else:  # units run side by side on many instances: an addition
                counted = Additions(deliveries={delivery.piece: 1})
                job = await asyncio.to_thread(self.store.add, delivery.job_id, counted)
        except JobNotFound:
            log.warning("job_delivery_orphaned")  # expired or deleted: nothing to do
            return "skipped"
        except (StorageError, Conflict) as exc:
            raise Retry(str(exc)) from exc
        if job.status.terminal:
            log.info("job_delivery_skipped", status=job.status.value)
            return "skipped"
        log.info("job_delivery_started", attempt=job.deliveries[delivery.piece])
        try:
            if delivery.unit is None:
                await self.work.plan(job, engine, token)
            else:
                await self.work.unit(job, delivery.unit, engine, token)
        except Stopped:
            log.info("job_delivery_stopped")
            return "skipped"
        except JobFailed as failed:
            await self.work.merger.end(job.id, JobStatus.FAILED, failed.error)
            return "failed"
        except Retry:
            raise
        except (StorageError, Conflict, JobNotFound) as exc:
            raise Retry(f"{type(exc).__name__}: {exc}") from exc
        except Exception:
            # A bug, or an input that breaks something unforeseen: redelivering it
            # would only repeat it. End the job, with the details in the log.
            log.exception("job_internal_error")
            await self.work.merger.end(job.id, JobStatus.FAILED, transitions.UNEXPECTED)
            return "failed"
        return "done"

    async def dead_letter(
        self, delivery: Delivery, attempts: int, message_id: str | None = None
    ) -> None:
        """A piece failed on every delivery: the job fails with that reason. Once per
        dead-lettered message (Pub/Sub delivers at least once; a message seen before
        is acked and nothing done), and never for a unit whose result is stored (a
        stale message: another delivery of it succeeded)."""
        if message_id is not None:
            if message_id in self._dead_letters:
                log.info("job_dead_letter_repeated", job_id=delivery.job_id, message_id=message_id)
                return
            self._dead_letters[message_id] = None
            if len(self._dead_letters) > DEAD_LETTERS_REMEMBERED:
                self._dead_letters.popitem(last=False)
        job = await asyncio.to_thread(self.store.get, delivery.job_id)
        if job is None or job.status.terminal or _done(job, delivery):
            log.info("job_dead_letter_ignored", job_id=delivery.job_id, piece=delivery.piece,
                     status=job.status.value if job else None)  # fmt: skip
            return
        what = "its plan" if delivery.unit is None else f"unit {delivery.unit}"
        error = JobError(
            code="job_delivery_failed",
            message=f"{what} failed on all {attempts} deliveries; the service logs have "
            "each failure under the job id",
        )
        log.error("job_dead_lettered", job_id=delivery.job_id, piece=delivery.piece,
                  attempts=attempts)  # fmt: skip
        with contextlib.suppress(JobNotFound):  # deleted meanwhile: nothing to fail
            if await self.work.merger.end(delivery.job_id, JobStatus.FAILED, error):
                metrics.JOBS_DEAD_LETTERED.inc()

    # --- lifecycle ---

    def start(self) -> None:
        """Start delivering once the model is loaded (a delivery before would only be
        retried), and the directory store's expiry."""
        self._tasks.append(asyncio.create_task(self._start_when_ready(), name="jobs-start"))
        if isinstance(self.store, DirectoryStore):
            self._tasks.append(asyncio.create_task(self._expire(self.store), name="jobs-expiry"))

    async def _start_when_ready(self) -> None:
        # The runtime sets the engine when its load finishes; no event to wait on.
        while self._engine() is None:  # noqa: ASYNC110
            await asyncio.sleep(READY_POLL_SECONDS)
        self.queue.start(self.handle, self.dead_letter)
        if isinstance(self.queue, LocalQueue):
            await self._recover(self.queue)
        log.info("jobs_started", store=self.store.location, queue=self.queue.name)

    async def _recover(self, queue: LocalQueue) -> None:
        """Queue again the unfinished jobs of local queues whose process is gone."""
        for job in await asyncio.to_thread(self.store.unfinished):
            previous = job.queued_by
            if not _gone(previous):
                continue
            claim = partial(transitions.claimed, previous=previous, instance=self.instance)
            taken = await asyncio.to_thread(self.store.update, job.id, claim)
            if taken.queued_by != self.instance:
                continue
            for delivery in _pending(taken):
                queue.put(delivery, taken.deliveries.get(delivery.piece, 0))
            log.info("job_recovered", job_id=job.id, previous=previous)

    async def _expire(self, store: DirectoryStore) -> None:
        while True:
            try:
                for job_id in await asyncio.to_thread(store.expire, time.time()):
                    log.info("job_expired", job_id=job_id)
            except OSError as exc:
                log.warning("job_expiry_failed", error=str(exc))
            await asyncio.sleep(EXPIRY_INTERVAL_SECONDS)

    async def begin_drain(self) -> None:
        """Take no new delivery; running units stop at the end of their batch and are
        redelivered (from their checkpoint) elsewhere."""
        self.draining = True

    async def wait_idle(self) -> None:
        """Return once no delivery runs here."""
        await self._idle.wait()

    async def stop_all(self) -> None:
        """The drain ran out of time, or the process stops without one: stop what
        still runs (its batch in progress is lost, not its checkpoint)."""
        self.draining = True
        running = [t for tokens in self._running.values() for t in tokens]
        for token in running:
            token.cancel("shutting_down")
        if running:
            log.warning("job_deliveries_stopped", jobs=sorted(self._running))

    async def close(self) -> None:
        """Stop the background tasks and the queue."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.queue.close()


def _kind(delivery: Delivery) -> str:
    return "plan" if delivery.unit is None else "unit"


def _done(job: Job, delivery: Delivery) -> bool:
    """Whether ``delivery`` is a unit whose result is stored (the plan's own end is not
    recorded apart from the units it published)."""
    return delivery.unit is not None and delivery.unit in job.units_done


def _pending(job: Job) -> list[Delivery]:
    """What an unfinished job still needs delivered: its plan, or its units not done
    (or its last unit again, to merge, when every unit is done)."""
    if not job.units_total:  # not planned yet (or silence: the plan merges it)
        return [Delivery(job_id=job.id)]
    left = [n for n in range(job.units_total) if n not in job.units_done]
    return [Delivery(job_id=job.id, unit=n) for n in left or [job.units_total - 1]]


def _gone(queued_by: str | None) -> bool:
    """Whether the process that queued a job locally is gone (on this machine)."""
    if queued_by is None:
        return True
    host, _, pid = queued_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
