"""What one request may cost: sizes, lengths, queue, deadlines, batching."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LimitsFields(BaseModel):
    """Scheduling and the limits every request is held to."""

    inference_workers: int = Field(
        1,
        ge=1,
        le=32,
        description="Model replicas per process, each with its own threads; each runs up "
        "to WHISPER_BATCH_MAX_SIZE requests at once.",
    )
    batch_max_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests each inference worker runs at once, their decoder calls "
        "gathered into one batched call of up to this many windows (30 s each at most; "
        "faster-whisper, openai-whisper ignores it). 1: no batching, one request per "
        "worker.",
    )
    batch_max_wait_ms: float = Field(
        50.0,
        ge=0,
        le=1000,
        description="Longest a decoder call waits for others to batch with (counted from "
        "when a busy model came free); never waited when every running request is already "
        "waiting (a lone request starts at once).",
    )
    queue_size: int = Field(
        7,
        ge=0,
        le=10_000,
        description="Requests allowed to wait for an inference worker; beyond it: 429 at once.",
    )
    queue_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait for an inference worker, then 503 queue_timeout.",
    )
    request_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Deadline of the whole request, queue wait included, then 504.",
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1024,
        le=2 * 1024**3,
        description="Largest accepted upload, in bytes.",
    )
    max_audio_seconds: float = Field(
        1800.0, gt=0, le=4 * 3600, description="Longest accepted audio after decoding."
    )
    default_beam_size: int = Field(5, ge=1, le=16, description="Beam size when not given.")
    goodput_admission: bool = Field(
        True,
        description="Refuse at once (503 deadline_unreachable, Retry-After) a request that "
        "could not finish within WHISPER_REQUEST_TIMEOUT_SECONDS: its audio's length "
        "(from the header, then decoded) and the audio admitted ahead of it, at the "
        "instance's measured speed. false = admit by queue and memory only.",
    )
    long_audio_seconds: float = Field(
        60.0,
        ge=0,
        le=24 * 3600,
        description="Audio at least this long is cut at pauses into regions decoded at "
        "once, their model calls batched (up to WHISPER_BATCH_MAX_SIZE regions: one 30 s "
        "window each while they fit, else 25 s of speech or more each); shorter audio is "
        "decoded window after window. 0 = never "
        "(faster-whisper with batching; openai-whisper always decodes window after window).",
    )
    audio_memory_mib: int = Field(
        0,
        ge=0,
        le=1_048_576,
        description="Decoded audio one process may hold at once (requests and jobs, 64 kB "
        "per second of audio); beyond it new work gets 503 memory_pressure. 0 = what the "
        "container's memory limit leaves after the model and the running inferences.",
    )
