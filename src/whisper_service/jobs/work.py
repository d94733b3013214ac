"""Doing one delivery: a job's plan, or one of its units.

- **Plan**: fetch and decode the input once, cut it into windows (``chunking``), fix
  the language on the first window when the caller gave none, group the windows into
  units sized from the measured real-time factor, store each unit's audio and the
  plan; each unit is published as soon as VAD has passed it, so other instances start
  while the plan goes on. A redelivered plan reuses a stored plan.
- **Unit**: windows in batches through the shared inference workers; after each
  batch a unit checkpoint, and a read of the record (was the job cancelled?); every
  few seconds the progress goes in. A redelivered unit resumes at its first window not
  checkpointed; a unit already stored is acked without work. With diarization, the
  unit's speech windows are embedded and stored too (the merge clusters them all).
  Progress and the unit's number go into the record as additions (``JobStore.add``:
  no transaction, since every instance on the job writes that one record); the
  delivery that reads back every unit stored hands the job to ``merge``.

Raises ``Retry`` for what another delivery may get past (draining, storage trouble,
model not loaded) and ``JobFailed`` for what none will (bad input, too long).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import structlog

from whisper_service.capacity.memory import AudioMemory
from whisper_service.capacity.scheduler import Rejected, Scheduler
from whisper_service.config import Settings
from whisper_service.diarization import embed_speech
from whisper_service.diarization.transcripts import CHANNEL_NAMES
from whisper_service.engines.base import (
    Cancelled,
    CancelToken,
    Engine,
    TranscribeOptions,
    Transcription,
)
from whisper_service.engines.regions import on_timeline
from whisper_service.jobs import transitions
from whisper_service.jobs.chunking import RealtimeFactor, UnitGrouper, final_windows
from whisper_service.jobs.dispatch import Delivery, Queue, Retry
from whisper_service.jobs.files import JobFiles, unit_samples
from whisper_service.jobs.inputs import MEMORY_RECHECK_SECONDS, JobInput
from whisper_service.jobs.merge import Merger
from whisper_service.jobs.records import Job, Plan, Unit, UnitCheckpoint, UnitSpec, Window
from whisper_service.jobs.store import Additions, JobStore
from whisper_service.observability.telemetry import telemetry
from whisper_service.storage import GcsStorage

log = structlog.get_logger(__name__)

T = TypeVar("T")

# How often a unit writes its progress into the job's record (one document that every
# instance on the job writes: Firestore sustains about one write a second on it).
PROGRESS_SECONDS = 5.0
# Units never hold less than one full window of audio.
MIN_UNIT_SECONDS = 30.0


class Stopped(Exception):
    """The job ended (cancelled, failed elsewhere) while this delivery worked on it."""


class JobWork:
    """The plan and unit handlers of one process."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        files: JobFiles,
        queue: Queue,
        scheduler: Scheduler,
        storage: GcsStorage,
        *,
        draining: Callable[[], bool],
        memory_critical: Callable[[], bool],
        audio_memory: AudioMemory,
    ) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.queue = queue
        self.scheduler = scheduler
        self.storage = storage
        self._draining = draining
        self._memory_critical = memory_critical
        self.audio_memory = audio_memory
        self.realtime = RealtimeFactor()
        self.merger = Merger(settings, store, files, storage)
        self.inputs = JobInput(settings, storage, files, draining)

    def unit_seconds(self) -> float:
        """Audio per unit: what the target unit time transcribes at the measured
        real-time factor, within the configured bounds."""
        fits = self.settings.jobs_unit_seconds / max(self.realtime.value, 1e-3)
        return max(MIN_UNIT_SECONDS, min(fits, self.settings.jobs_unit_max_audio_seconds))

    # --- the plan ---

    async def plan(self, job: Job, engine: Engine, token: CancelToken) -> None:
        """Plan ``job``, publishing each unit as soon as it is final, so that other
        instances start while VAD goes on; a redelivered plan reuses a stored plan."""
        plan = await asyncio.to_thread(self.files.get_plan, job.id)
        fresh = plan is None
        if plan is None:
            plan = await self._make_plan(job, engine, token)
        job = await asyncio.to_thread(
            self.store.update, job.id, lambda j: transitions.planned(j, plan)
        )
        if job.status.terminal:
            raise Stopped
        pending = [n for n in range(len(plan.units)) if n not in job.units_done]
        if transitions.complete(job):  # silence only, or every unit ran during planning
            await self.merger.merge(job, plan)
        elif not fresh:  # a plan stored by an earlier delivery: its units again
            await self.queue.publish([Delivery(job_id=job.id, unit=n) for n in pending])
        log.info("job_planned", units=len(plan.units), unit_seconds=round(self.unit_seconds(), 1),
                 windows=job.progress.windows_total, pending=len(pending))  # fmt: skip

    async def _make_plan(self, job: Job, engine: Engine, token: CancelToken) -> Plan:
        units: list[Unit] = []
        with self.audio_memory.reservation() as memory:
            decoded = await self.inputs.decode(job, token, memory.ensure)
            # One track, or with diarize=channel each channel on its own (VAD, so a
            # channel's silence while the other speaks is never transcribed).
            tracks: list[tuple[int | None, np.ndarray]] = [(None, decoded.samples)]
            mode = "vad" if job.options.vad_filter else self.settings.jobs_chunking
            if decoded.channels is not None:
                tracks, mode = list(enumerate(decoded.channels)), "vad"
            language, probability = job.options.language, 0.0
            for channel, audio in tracks:
                groups = final_windows(audio, mode)
                grouper = UnitGrouper(self.unit_seconds())
                while (ready := await asyncio.to_thread(next, groups, None)) is not None:
                    if language is None and ready:
                        found = await self._language(engine, audio, ready[0], token)
                        language, probability = found
                    closed = [u for u in map(grouper.add, ready) if u is not None]
                    await self._publish(job.id, audio, units, closed, language, channel)
                last = grouper.finish()
                await self._publish(job.id, audio, units, [last] if last else [], language, channel)
        plan = Plan(duration=decoded.duration, language=language,
                    language_probability=probability, units=units)  # fmt: skip
        # Written last: a stored plan always has every unit beside it.
        await asyncio.to_thread(self.files.put_plan, job.id, plan)
        return plan

    async def _publish(
        self,
        job_id: str,
        audio: np.ndarray,
        units: list[Unit],
        new: list[Unit],
        language: str | None,
        channel: int | None,
    ) -> None:
        """Store ``new`` units of ``audio`` (of ``channel``; audio, then what their
        deliveries need), numbered after ``units``, and publish them."""
        first = len(units)
        new = [u.model_copy(update={"channel": channel}) for u in new]
        units.extend(new)
        # In parallel: on GCS each is a round trip, and planning is the job's serial part.
        await asyncio.gather(*(
            asyncio.to_thread(self.files.put_unit_audio, job_id, first + i, unit_samples(audio, u))
            for i, u in enumerate(new)
        ))  # fmt: skip
        await asyncio.gather(*(
            asyncio.to_thread(self.files.put_unit_spec, job_id, first + i,
                              UnitSpec(unit=u, language=language))
            for i, u in enumerate(new)
        ))  # fmt: skip
        if new:
            await self.queue.publish(
                [Delivery(job_id=job_id, unit=first + i) for i in range(len(new))]
            )

    async def _language(
        self, engine: Engine, audio: np.ndarray, first: Window, token: CancelToken
    ) -> tuple[str, float]:
        """The language of the first window: every unit then decodes in it."""
        if not engine.multilingual:
            return "en", 1.0
        piece = audio[int(first.start * 16_000) : int(first.end * 16_000)]
        found = await self._scheduled(lambda t: engine.detect_language(piece), token)
        return found[0]

    # --- a unit ---

    async def unit(self, job: Job, number: int, engine: Engine, token: CancelToken) -> None:
        """Transcribe unit ``number``; merge the job if that completed its units."""
        spec = await asyncio.to_thread(self.files.get_unit_spec, job.id, number)
        if spec is None:
            raise Retry(f"the windows of unit {number} are missing")
        unit = spec.unit
        checkpoint = await asyncio.to_thread(self.files.get_checkpoint, job.id, number)
        checkpoint = checkpoint or UnitCheckpoint()
        speakers_missing = job.options.diarize == "voices" and (
            await asyncio.to_thread(self.files.get_unit_speakers, job.id, number) is None
        )
        windows, speech = 0, 0.0  # a redelivery of a unit whose windows were all done
        if checkpoint.windows_done < len(unit.windows) or speakers_missing:
            audio = await asyncio.to_thread(self.files.get_unit_audio, job.id, number)
            if audio is None:
                raise Retry(f"the audio of unit {number} is missing")
            options = job.options.transcribe_options(spec.language)
            windows, speech = await self._windows(
                job.id, unit, number, audio, checkpoint, options, engine, token
            )
            if speakers_missing:
                await self._embed_speakers(job.id, unit, number, audio, token)
        stored = Additions(units_done=(number,), windows=windows, audio_seconds=speech)
        done = await asyncio.to_thread(self.store.add, job.id, stored)
        if done.status.terminal:
            raise Stopped
        log.info("job_unit_done", unit=number, windows=len(unit.windows),
                 units_done=len(done.units_done), units_total=done.units_total)  # fmt: skip
        if transitions.complete(done):  # the plan is stored before units_total is set
            plan = await asyncio.to_thread(self.files.get_plan, job.id)
            if plan is None:
                raise Retry("the job's plan is missing")
            await self.merger.merge(done, plan)

    async def _windows(
        self,
        job_id: str,
        unit: Unit,
        number: int,
        audio: np.ndarray,
        checkpoint: UnitCheckpoint,
        options: TranscribeOptions,
        engine: Engine,
        token: CancelToken,
    ) -> tuple[int, float]:
        """Run the unit's windows not checkpointed; the windows and speech seconds done
        but not yet in the record's progress (stored with the unit)."""
        reported_at = time.monotonic()
        windows, seconds = 0, 0.0
        while checkpoint.windows_done < len(unit.windows):
            await self._wait_for_memory(token)
            start = checkpoint.windows_done
            batch = unit.windows[start : start + self.settings.jobs_batch_size]
            began = time.monotonic()
            part = await self._infer(engine, audio, unit, batch, options, token)
            speech = sum(w.end - w.start for w in batch)
            self.realtime.observe(time.monotonic() - began, speech)
            speaker = None if unit.channel is None else CHANNEL_NAMES[unit.channel]
            checkpoint.segments.extend(on_timeline(part.segments, unit.start, speaker))
            checkpoint.windows_done += len(batch)
            await asyncio.to_thread(self.files.put_checkpoint, job_id, number, checkpoint)
            windows, seconds = windows + len(batch), seconds + speech
            if checkpoint.windows_done == len(unit.windows):
                break  # what is left goes in with the unit itself
            # Every instance working on a job writes the same record: progress goes in
            # at most every few seconds; a cancel is seen by a plain read per batch.
            if time.monotonic() - reported_at >= PROGRESS_SECONDS:
                report = Additions(windows=windows, audio_seconds=seconds)
                latest: Job | None = await asyncio.to_thread(self.store.add, job_id, report)
                windows, seconds, reported_at = 0, 0.0, time.monotonic()
            else:
                latest = await asyncio.to_thread(self.store.get, job_id)
            if latest is None or latest.status.terminal:
                token.cancel("cancelled")
                raise Stopped
        return windows, seconds

    async def _embed_speakers(
        self, job_id: str, unit: Unit, number: int, audio: np.ndarray, token: CancelToken
    ) -> None:
        """The unit's speech windows embedded (on an inference worker) and stored: the
        merge clusters every unit's together, so speakers keep one label throughout."""
        found = await self._scheduled(
            lambda t: embed_speech(audio, offset=unit.start, check=t.check), token
        )
        await asyncio.to_thread(self.files.put_unit_speakers, job_id, number, found)

    async def _infer(
        self,
        engine: Engine,
        audio: np.ndarray,
        unit: Unit,
        batch: list[Window],
        options: TranscribeOptions,
        token: CancelToken,
    ) -> Transcription:
        spans = [(w.start - unit.start, w.end - unit.start) for w in batch]
        seconds = sum(end - start for start, end in spans)
        settings = self.settings

        def work(t: CancelToken) -> Transcription:
            with telemetry.inference(settings.engine.value, settings.model, options.task,
                                     seconds, **{"whisper.windows": len(spans)}):  # fmt: skip
                return engine.transcribe_windows(audio, spans, options, t)

        return await self._scheduled(work, token)

    async def _scheduled(self, work: Callable[[CancelToken], T], token: CancelToken) -> T:
        try:
            return await self.scheduler.run_background(work, token)
        except (Cancelled, Rejected) as exc:
            if exc.reason == "cancelled":
                raise Stopped from exc
            raise Retry(exc.reason or "stopped") from exc

    async def _wait_for_memory(self, token: CancelToken) -> None:
        """Hold the next batch while the memory guard refuses requests (a batch would
        add its decoder state on top); give the unit back when draining."""
        waited = False
        while True:
            if self._draining():
                raise Retry("draining")
            if token.cancelled:
                raise Stopped if token.reason == "cancelled" else Retry(token.reason or "stopped")
            if not self._memory_critical():
                return
            if not waited:
                log.warning("job_waiting_for_memory")
            waited = True
            await asyncio.sleep(MEMORY_RECHECK_SECONDS)
