"""Running one job: its audio fetched and decoded, cut into windows (or its checkpoint
resumed), the windows transcribed batch by batch through the shared inference workers,
a checkpoint and the record's progress written after each batch.

Ownership (leases, hand-overs, sweeps) is the runner's; this module only says, by
raising, how a run ended early: ``Stop`` (hand over, or end the job so), ``Lost``
(another instance holds it now) or ``JobFailed`` (it cannot succeed).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import IO

import numpy as np
import structlog

from whisper_service.audio import AudioError, decode_audio
from whisper_service.config import Settings
from whisper_service.engines.base import (
    Cancelled,
    CancelToken,
    Engine,
    TranscribeOptions,
    Transcription,
)
from whisper_service.jobs.chunking import plan_windows
from whisper_service.jobs.records import Checkpoint, Job, JobError, JobStatus
from whisper_service.jobs.store import JobStore
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.memory import AudioMemory, AudioTooBig, MemoryRefused, Reservation
from whisper_service.serving.scheduler import Rejected, Scheduler
from whisper_service.storage import GcsStorage, StorageError

log = structlog.get_logger(__name__)

# How often a job held back by the memory guard looks again.
MEMORY_RECHECK_SECONDS = 1.0


class Stop(Exception):
    """The job must stop here: ``status`` None means hand it over, else end it so."""

    def __init__(self, status: JobStatus | None, error: JobError | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


class Lost(Exception):
    """Another instance holds the job now (this one was presumed dead): stop quietly."""


class JobFailed(Exception):
    """The job cannot succeed: bad input, missing object, audio too long."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = JobError(code=code, message=message)


class JobExecution:
    """Transcribes jobs for the instance ``instance``; ``lease_until`` is the lease a
    progress write renews, ``draining`` and ``memory_critical`` are asked between
    batches, ``audio_memory`` holds the decoded audio."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        scheduler: Scheduler,
        storage: GcsStorage,
        *,
        instance: str,
        lease_until: Callable[[], float],
        draining: Callable[[], bool],
        memory_critical: Callable[[], bool],
        audio_memory: AudioMemory,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.storage = storage
        self.instance = instance
        self._lease_until = lease_until
        self._draining = draining
        self._memory_critical = memory_critical
        self.audio_memory = audio_memory

    async def transcribe(self, job: Job, token: CancelToken, engine: Engine) -> Transcription:
        """Decode, plan (or resume) the windows, and run them batch by batch. Raises
        Stop (hand over, or end the job so), Lost or JobFailed."""
        # The decoded audio is held until the last batch: it stays reserved as long.
        with self.audio_memory.reservation() as memory:
            audio = await self._audio(job, token, memory)
            return await self._windows(job, token, engine, audio)

    async def _windows(
        self, job: Job, token: CancelToken, engine: Engine, audio: np.ndarray
    ) -> Transcription:
        checkpoint = await asyncio.to_thread(self.store.read_checkpoint, job.id)
        if checkpoint is None:
            mode = "vad" if job.options.vad_filter else self.settings.jobs_chunking
            windows = await asyncio.to_thread(plan_windows, audio, mode)
            checkpoint = Checkpoint(duration=len(audio) / 16_000, windows=windows)
            await asyncio.to_thread(self.store.write_checkpoint, job.id, checkpoint)
        else:
            log.info("job_resumed", windows_done=checkpoint.windows_done,
                     windows_total=len(checkpoint.windows))  # fmt: skip
        await self._progress(job.id, checkpoint, token)
        batch_size = self.settings.jobs_batch_size
        waited_for_memory = False
        while checkpoint.windows_done < len(checkpoint.windows):
            if self._draining():
                raise Stop(None)
            if token.cancelled:
                raise stop_for(token.reason)
            if self._memory_critical():
                # The memory guard refuses new requests here; a batch would add its
                # decoder state on top. Wait (the heartbeat keeps the lease).
                if not waited_for_memory:
                    log.warning("job_waiting_for_memory")
                waited_for_memory = True
                await asyncio.sleep(MEMORY_RECHECK_SECONDS)
                continue
            waited_for_memory = False
            batch = checkpoint.windows[
                checkpoint.windows_done : checkpoint.windows_done + batch_size
            ]
            spans = [(w.start, w.end) for w in batch]
            options = job.options.transcribe_options(checkpoint.language)
            part = await self._infer(engine, audio, spans, options, token)
            if checkpoint.language is None:
                checkpoint.language = part.language
                checkpoint.language_probability = part.language_probability
            checkpoint.segments.extend(part.segments)
            checkpoint.windows_done += len(batch)
            await asyncio.to_thread(self.store.write_checkpoint, job.id, checkpoint)
            await self._progress(job.id, checkpoint, token)
        segments = [replace(s, id=i) for i, s in enumerate(checkpoint.segments)]
        return Transcription(
            "".join(s.text for s in segments).strip(),
            checkpoint.language or job.options.language or "en",
            checkpoint.language_probability,
            checkpoint.duration,
            segments,
        )

    async def _infer(
        self,
        engine: Engine,
        audio: np.ndarray,
        spans: list[tuple[float, float]],
        options: TranscribeOptions,
        token: CancelToken,
    ) -> Transcription:
        seconds = sum(end - start for start, end in spans)
        settings = self.settings

        def work(t: CancelToken) -> Transcription:
            with telemetry.inference(settings.engine.value, settings.model, options.task,
                                     seconds, **{"whisper.windows": len(spans)}):  # fmt: skip
                return engine.transcribe_windows(audio, spans, options, t)

        try:
            return await self.scheduler.run_background(work, token)
        except (Cancelled, Rejected) as exc:
            raise stop_for(exc.reason) from exc

    async def _progress(self, job_id: str, checkpoint: Checkpoint, token: CancelToken) -> None:
        """Write progress and renew the lease; stop if cancelled or lost meanwhile."""
        done = checkpoint.windows_done
        seconds_done = checkpoint.windows[done - 1].end if done else 0.0
        if done == len(checkpoint.windows):
            seconds_done = checkpoint.duration

        def change(job: Job) -> Job | None:
            if job.status.terminal or job.instance != self.instance:
                return None
            job.progress.audio_seconds_total = round(checkpoint.duration, 3)
            job.progress.audio_seconds_done = round(seconds_done, 3)
            job.progress.windows_total = len(checkpoint.windows)
            job.progress.windows_done = done
            job.language = checkpoint.language
            job.lease_expires_at = self._lease_until()
            return job

        job = await asyncio.to_thread(self.store.update, job_id, change)
        if job.instance != self.instance or job.status.terminal:
            token.cancel("lost")
            raise Lost
        if job.cancel_requested:
            raise Stop(JobStatus.CANCELLED, CANCELLED)

    async def _audio(self, job: Job, token: CancelToken, memory: Reservation) -> np.ndarray:
        """The job's audio, fetched from the store or GCS and decoded into ``memory``;
        while the budget has no room for it, wait (like the memory guard)."""
        waited = False
        while True:
            source = await self._fetch(job)
            try:
                with source:
                    decoded = await asyncio.to_thread(
                        decode_audio,
                        source,
                        max_seconds=self.settings.jobs_max_audio_seconds,
                        check=token.check,
                        reserve=memory.ensure,
                    )
                return decoded.samples
            except MemoryRefused:
                if not waited:
                    log.warning("job_waiting_for_memory", reason="audio budget")
                waited = True
            except (AudioError, AudioTooBig) as exc:
                raise JobFailed(exc.code, exc.message) from exc
            except Cancelled as exc:
                raise stop_for(exc.reason) from exc
            await self._pause(token)

    async def _pause(self, token: CancelToken) -> None:
        """Wait before looking for memory again; stop if the job must."""
        await asyncio.sleep(MEMORY_RECHECK_SECONDS)
        if self._draining():
            raise Stop(None)
        if token.cancelled:
            raise stop_for(token.reason)

    async def _fetch(self, job: Job) -> IO[bytes]:
        """The input's bytes in a temporary file at position 0."""
        if job.source.kind == "gcs":
            try:
                return await asyncio.to_thread(
                    self.storage.download, str(job.source.uri), self.settings.max_upload_bytes
                )
            except StorageError as exc:
                if exc.status >= 500:
                    raise  # GCS trouble, not the input's: hand over and retry
                raise JobFailed(exc.code, exc.message) from exc
        local = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
        if not await asyncio.to_thread(self.store.open_input, job.id, local):
            local.close()
            raise JobFailed("input_missing", "the uploaded file is no longer in the store")
        local.seek(0)
        return local


def stop_for(reason: str | None) -> Exception:
    """What a cancelled token means for the job: cancelled by its client, lost to
    another instance, or (drain, shutdown) to be handed over."""
    if reason == "cancelled":
        return Stop(JobStatus.CANCELLED, CANCELLED)
    if reason == "lost":
        return Lost()
    return Stop(None)


UNEXPECTED = JobError(
    code="internal_error",
    message="the job failed on an unexpected error; the service logs have the details under its id",
)
CANCELLED = JobError(code="cancelled", message="cancelled by a DELETE /jobs/{id} request")


def ended(job: Job, status: JobStatus, error: JobError | None) -> Job:
    """``job`` in a final state: released by every instance."""
    job.status, job.error = status, error
    job.finished_at = time.time()
    job.instance, job.lease_expires_at = None, None
    return job


def started(job: Job, *, instance: str, lease_until: float) -> Job | None:
    """``job`` as it starts running on ``instance`` (cancelled if that was asked while
    it waited); None if ``instance`` no longer holds it or it has ended."""
    if job.status.terminal or job.instance != instance:
        return None
    if job.cancel_requested:
        return ended(job, JobStatus.CANCELLED, CANCELLED)
    job.status = JobStatus.RUNNING
    job.started_at = job.started_at or time.time()
    job.attempts += 1
    job.lease_expires_at = lease_until
    return job


def finished(
    job: Job, instance: str, status: JobStatus, error: JobError | None, output_uri: str | None
) -> Job | None:
    """``job`` ended by ``instance`` with ``status``; None if it no longer holds it."""
    if job.status.terminal or job.instance != instance:
        return None
    job.output_uri = output_uri
    if status is JobStatus.SUCCEEDED and job.progress.audio_seconds_total is not None:
        job.progress.audio_seconds_done = job.progress.audio_seconds_total
    return ended(job, status, error)


def cancelled(job: Job, *, running_here: bool) -> Job | None:
    """``job`` as a cancel request leaves it: ended at once if it waits in a queue (not
    this instance's running one), else marked so that its holder stops it."""
    if job.status.terminal:
        return None
    if job.status is JobStatus.QUEUED and not running_here:
        return ended(job, JobStatus.CANCELLED, CANCELLED)
    job.cancel_requested = True
    return job
