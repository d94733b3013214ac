"""A budget for decoded audio: what one process may hold of it at once.

Decoded audio is the memory a caller controls: 64 kB per second of audio, whatever
the upload's size (a 1.4 MB Opus file decodes to 110 MB). Each request (and each job)
reserves what its samples take before the decoder allocates them, and gives it back
when it is done; what does not fit is refused at once with 503 ``memory_pressure``,
rather than found by the OOM killer. The budget is ``WHISPER_AUDIO_MEMORY_MIB``, or,
when that is 0, what the container's memory limit leaves once the model is loaded
(see ``auto_budget``).
"""

from __future__ import annotations

import threading
from types import TracebackType

import structlog

from whisper_service.config import Settings
from whisper_service.errors import ServiceError

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
# What one running inference holds beyond its audio and the loaded model, measured
# with tiny.en from a freshly loaded process: 115 MiB (int8) to 175 MiB (float32),
# flat from 10 minutes of audio on (decoder state and allocator caches; the features
# are computed block-wise). Rounded up.
RUNNING_INFERENCE_MIB = 200
# What a job's batched pass holds per window in the batch (measured: +722 MiB for 8
# windows, +346 for 4, the same in int8 and float32).
JOB_WINDOW_MIB = 90
# Below this a budget is not worth having: the floor of the derived one.
MIN_BUDGET_MIB = 64
# Speaker diarization (WHISPER_DIARIZATION=true), per worker: the speaker encoder's
# ONNX Runtime session and scipy (a gunicorn worker measured 338 MiB with them, 235
# without), and scikit-learn's k-means (66 MiB), imported the first time a recording
# has more than 1000 speech windows (about 25 minutes of speech) and kept. It loads
# just after the model, so the budget sets it aside. Its working memory (about 40 MiB
# for 30 minutes of audio) is held on the inference worker after the engine's, within
# a running inference's share (docs/benchmarks.md).
DIARIZATION_MIB = 170


def running_inference_mib(settings: Settings, *, jobs: bool) -> int:
    """What the inference workers hold while they all run, beyond their audio: a job's
    batched pass (``jobs``) takes a worker and holds its batch's windows. With
    batching across requests, requests and a job share each worker's batched calls,
    which hold ``batch_size`` windows, or a job's larger batch alone; counted at a
    job's 90 MiB per window, which over-counts requests' (a batch of 8 requests
    measured +128-147 MiB over two unbatched workers: docs/benchmarks.md)."""
    job_batch = max(RUNNING_INFERENCE_MIB, JOB_WINDOW_MIB * settings.jobs_batch_size)
    if settings.batch_size > 1:
        windows = max(settings.batch_size, settings.jobs_batch_size if jobs else 1)
        return settings.inference_workers * max(RUNNING_INFERENCE_MIB, JOB_WINDOW_MIB * windows)
    job_slots = min(settings.jobs_concurrency, settings.inference_workers) if jobs else 0
    return (settings.inference_workers - job_slots) * RUNNING_INFERENCE_MIB + job_slots * job_batch


def audio_budget_bytes(settings: Settings, memory_limit: int, process_rss: int) -> int:
    """WHISPER_AUDIO_MEMORY_MIB when set; else this process's share of the container's
    limit, up to its degraded threshold, less what the process holds with its model
    loaded, what diarization will load, and what its inference workers hold while
    they run."""
    if settings.audio_memory_mib:
        return settings.audio_memory_mib * MIB
    ceiling = memory_limit * settings.health_memory_degraded_percent / 100
    share = ceiling / settings.web_workers
    running = running_inference_mib(settings, jobs=bool(settings.jobs_store))
    # Derived as the model becomes ready, before diarization has loaded.
    speakers = DIARIZATION_MIB if settings.diarization else 0
    free = share - process_rss - (running + speakers) * MIB
    return max(int(free), MIN_BUDGET_MIB * MIB)


class MemoryRefused(ServiceError):
    """The audio would not fit in the memory left for audio now; ``needed`` bytes."""

    status = 503
    code = "memory_pressure"

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message, headers={"Retry-After": "5"})
        self.needed = needed


class AudioTooBig(ServiceError):
    """The audio would not fit in this process's budget even if nothing else ran."""

    status = 413
    code = "audio_too_long"


class AudioMemory:
    """The decoded-audio budget of one process (thread-safe: decoders run in threads)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    def reservation(self) -> Reservation:
        """An empty reservation, to grow as the audio is decoded."""
        return Reservation(self)

    def _grow(self, delta: int) -> bool:
        with self._lock:
            if self._used + delta > self.limit:
                return False
            self._used += delta
            return True

    def _shrink(self, delta: int) -> None:
        with self._lock:
            self._used -= delta


class Reservation:
    """Bytes one request or job holds; a context manager that gives them back."""

    def __init__(self, memory: AudioMemory) -> None:
        self._memory = memory
        self.bytes = 0

    def ensure(self, nbytes: int) -> None:
        """Hold at least ``nbytes``. Raises AudioTooBig when the budget could never hold
        them, MemoryRefused when it cannot now (other work holds the rest)."""
        if nbytes <= self.bytes:
            return
        memory = self._memory
        if nbytes > memory.limit:
            raise AudioTooBig(
                f"decoded, this audio takes {nbytes / MIB:.0f} MiB; an instance holds at "
                f"most {memory.limit / MIB:.0f} MiB of audio: send shorter audio"
            )
        if not memory._grow(nbytes - self.bytes):
            raise MemoryRefused(
                f"this instance has no room for {nbytes / MIB:.0f} MiB of decoded audio "
                f"now ({memory.used / MIB:.0f} of {memory.limit / MIB:.0f} MiB in use); "
                "retry later",
                nbytes,
            )
        self.bytes = nbytes

    def resize(self, nbytes: int) -> None:
        """Hold exactly ``nbytes``: more as ``ensure`` takes them (and refuses them),
        fewer by giving the rest back (a live session's audio grows and shrinks)."""
        if nbytes >= self.bytes:
            self.ensure(nbytes)
            return
        self._memory._shrink(self.bytes - nbytes)
        self.bytes = nbytes

    def release(self) -> None:
        """Give everything back."""
        self._memory._shrink(self.bytes)
        self.bytes = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
