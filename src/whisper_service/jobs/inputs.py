"""A job's input, fetched and decoded: from the store (an upload) or GCS, into the
audio budget, waiting while the budget has no room; with ``diarize=channel`` its two
channels kept apart (each is planned on its own)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from typing import IO

import structlog

from whisper_service.audio import AudioError, DecodedAudio, decode_audio
from whisper_service.capacity.memory import AudioTooBig, MemoryRefused
from whisper_service.config import Settings
from whisper_service.diarization.speakers import DiarizeOptions
from whisper_service.diarization.transcripts import check_channels
from whisper_service.engines import CancelToken
from whisper_service.engines.base import Cancelled
from whisper_service.errors import ServiceError
from whisper_service.jobs.dispatch import Retry
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.records import Job, JobError
from whisper_service.storage import GcsStorage, StorageError

log = structlog.get_logger(__name__)

# How often work held back by the memory guard looks again.
MEMORY_RECHECK_SECONDS = 1.0


class JobFailed(Exception):
    """The job cannot succeed: bad input, missing object, audio too long."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = JobError(code=code, message=message)


class JobInput:
    """Fetches and decodes jobs' inputs."""

    def __init__(
        self,
        settings: Settings,
        storage: GcsStorage,
        files: JobFiles,
        draining: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.files = files
        self._draining = draining

    async def decode(
        self, job: Job, token: CancelToken, reserve: Callable[[int], None]
    ) -> DecodedAudio:
        """The job's audio, decoded into the reservation; while the budget has no room
        for it, wait (like the memory guard)."""
        stereo = job.options.diarize == "channel"
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
                        reserve=reserve,
                        stereo=stereo,
                    )
                if stereo:
                    await asyncio.to_thread(check_channels, decoded, DiarizeOptions(mode="channel"))
                return decoded
            except MemoryRefused:
                if not waited:
                    log.warning("job_waiting_for_memory", reason="audio budget")
                waited = True
            except Cancelled as exc:
                raise Retry(exc.reason or "stopped") from exc
            except (AudioError, AudioTooBig, ServiceError) as exc:
                raise JobFailed(exc.code, exc.message) from exc
            await asyncio.sleep(MEMORY_RECHECK_SECONDS)
            if self._draining():
                raise Retry("draining")

    async def _fetch(self, job: Job) -> IO[bytes]:
        """The input's bytes in a temporary file at position 0."""
        if job.source.kind == "gcs":
            try:
                return await asyncio.to_thread(
                    self.storage.download, str(job.source.uri), self.settings.max_upload_bytes
                )
            except StorageError as exc:
                if exc.status >= 500:
                    raise Retry(exc.message) from exc  # GCS trouble, not the input's
                raise JobFailed(exc.code, exc.message) from exc
        local = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
        if not await asyncio.to_thread(self.files.get_input, job.id, local):
            local.close()
            raise JobFailed("input_missing", "the uploaded file is no longer in the store")
        local.seek(0)
        return local
