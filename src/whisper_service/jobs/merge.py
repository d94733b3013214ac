"""Merging a job whose every unit is stored: segments in timeline order, ids
renumbered, the language the plan fixed, the speakers when asked for (clustered over
the whole recording), then the one transition to ``succeeded``.

Merging is deterministic, so whoever merges writes the same result. Two deliveries
may merge at once (the unit that completed the set, and a redelivery of it after a
lost ack); the record's transaction lets exactly one of them make the transition,
and only that one logs ``job_merged`` and counts the job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import structlog

from whisper_service.config import Settings
from whisper_service.diarization.attribution import attribute, relabel, speakers_in
from whisper_service.diarization.speakers import (
    DiarizeOptions,
    SpeakerWindows,
    label_turns,
    letters,
)
from whisper_service.engines.base import Transcription
from whisper_service.formats import MEDIA_TYPES, transcript_file
from whisper_service.jobs import transitions
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.records import Job, JobError, JobStatus, Plan
from whisper_service.jobs.store import JobStore
from whisper_service.observability import metrics
from whisper_service.observability.telemetry import telemetry
from whisper_service.storage import GcsStorage, OutputExists

log = structlog.get_logger(__name__)


class Merger:
    """Merges jobs and ends them."""

    def __init__(
        self, settings: Settings, store: JobStore, files: JobFiles, storage: GcsStorage
    ) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.storage = storage

    async def merge(self, job: Job, plan: Plan) -> bool:
        """Write the result (and the gs:// copy asked for), then mark the job succeeded;
        whether this call made that transition."""
        result = await asyncio.to_thread(self._merged, job, plan)
        await asyncio.to_thread(self.files.put_result, job.id, result)
        output_uri = None
        if job.options.save_to_gcs:
            fmt = job.options.response_format
            content, extension = transcript_file(result, fmt)
            try:
                output_uri = await asyncio.to_thread(
                    self.storage.upload_text, job.id, extension, content, MEDIA_TYPES[fmt]
                )
            except OutputExists as exists:  # an earlier merge of this job wrote it
                output_uri = exists.uri
        won = await self.end(job.id, JobStatus.SUCCEEDED, None, output_uri)
        if won:
            seconds = time.time() - (job.started_at or job.created_at)
            log.info(
                "job_merged",
                units=len(plan.units),
                segments=len(result.segments),
                audio_seconds=round(result.duration, 3),
                seconds=round(seconds, 3),
            )
        return won

    def _merged(self, job: Job, plan: Plan) -> Transcription:
        segments = []
        for number in range(len(plan.units)):
            checkpoint = self.files.get_checkpoint(job.id, number)
            if checkpoint is None:
                raise RuntimeError(f"unit {number} is marked done but has no checkpoint")
            segments.extend(checkpoint.segments)
        segments.sort(key=lambda s: (s.start, s.end))
        segments = [replace(s, id=i) for i, s in enumerate(segments)]
        merged = Transcription(
            "".join(s.text for s in segments).strip(),
            plan.language or job.options.language or "en",
            plan.language_probability,
            plan.duration,
            segments,
        )
        if job.options.diarize == "voices":
            merged = self._diarized(job, plan, merged)
        return merged

    def _diarized(self, job: Job, plan: Plan, merged: Transcription) -> Transcription:
        """Speakers clustered over every unit's embeddings at once (per unit, unit 2's
        A need not be unit 1's A), then put on the merged transcript."""
        found = SpeakerWindows()
        for number in range(len(plan.units)):
            part = self.files.get_unit_speakers(job.id, number)
            if part is None:
                raise RuntimeError(f"unit {number} is marked done but has no speakers")
            found.extend(part)
        options = job.options
        diarization = DiarizeOptions(
            min_speakers=options.min_speakers, max_speakers=options.max_speakers
        )
        with telemetry.diarization("voices", merged.duration) as span:
            turns = label_turns(found, diarization)
            labelled = relabel(attribute(merged, turns), letters(len(turns)), set())
            telemetry.speakers_found(span, "voices", len(speakers_in(labelled)))
        if options.word_timestamps:
            return labelled
        return replace(labelled, segments=[replace(s, words=None) for s in labelled.segments])

    async def end(
        self,
        job_id: str,
        status: JobStatus,
        error: JobError | None,
        output_uri: str | None = None,
    ) -> bool:
        """Move the job to ``status``; whether this call did it (False: it had ended)."""
        retention = self.settings.jobs_retention_seconds
        made: list[Job] = []

        def change(job: Job) -> Job | None:
            made.clear()
            changed = transitions.ended(job, status, error, retention, output_uri)
            if changed is not None:
                made.append(changed)
            return changed

        await asyncio.to_thread(self.store.update, job_id, change)
        if not made:
            return False
        metrics.JOBS_FINISHED.labels(status.value).inc()
        if error is not None:
            # A DELETE is the caller's choice; a failure is worth a look.
            level = log.info if status is JobStatus.CANCELLED else log.warning
            level(f"job_{status.value}", job_id=job_id, code=error.code, reason=error.message)
        # The input and the units are no longer needed; the result stays until expiry.
        await asyncio.to_thread(self.files.discard_work, job_id)
        return True
