"""What a job is: its record (status, options, progress, outcome) and the JSON forms
of its checkpoint and result."""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter

from whisper_service.engines.base import Segment, Task, TranscribeOptions, Transcription
from whisper_service.formats import ResponseFormat


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the job will never change again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobOptions(BaseModel):
    """The transcription options a job was submitted with (as on /transcribe)."""

    language: str | None = None
    task: Task = "transcribe"
    response_format: ResponseFormat = ResponseFormat.JSON
    word_timestamps: bool = False
    temperature: float = 0.0
    beam_size: int = 5
    prompt: str | None = None
    vad_filter: bool = False
    save_to_gcs: bool = False
    # Speakers by voice (each unit embeds its speech, the merge clusters them all),
    # or by channel (each channel of a stereo call planned into units of its own).
    diarize: Literal["none", "voices", "channel"] = "none"
    min_speakers: int = 1
    max_speakers: int = 8

    def transcribe_options(self, language: str | None = None) -> TranscribeOptions:
        """Engine options; ``language`` (detected on the first batch) wins when set.
        Diarization by voice needs the words' times (where speakers change)."""
        return TranscribeOptions(
            language=language or self.language,
            task=self.task,
            beam_size=self.beam_size,
            temperature=self.temperature,
            prompt=self.prompt,
            word_timestamps=self.word_timestamps or self.diarize == "voices",
        )


class JobSource(BaseModel):
    """Where the audio comes from: an upload kept in the store, or a gs:// object."""

    kind: Literal["upload", "gcs"]
    uri: str | None = None
    filename: str | None = None
    bytes: int | None = None


class JobProgress(BaseModel):
    """Audio transcribed so far; windows are the <= 30 s pieces the audio is cut into."""

    audio_seconds_done: float = 0.0
    audio_seconds_total: float | None = None
    windows_done: int = 0
    windows_total: int | None = None

    @property
    def percent(self) -> float:
        """Share of the audio done, 0-100."""
        if not self.audio_seconds_total:
            return 0.0
        return round(min(100.0, 100 * self.audio_seconds_done / self.audio_seconds_total), 1)


class JobError(BaseModel):
    """Why a job failed or was cancelled."""

    code: str
    message: str


class Job(BaseModel):
    """A job's record: the one document every change is a transaction on."""

    id: str
    status: JobStatus = JobStatus.QUEUED
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # When a finished job may be deleted: Firestore's TTL policy reads this field.
    expires_at: datetime | None = None
    client: str | None = None
    request_id: str | None = None
    source: JobSource
    options: JobOptions
    progress: JobProgress = Field(default_factory=JobProgress)
    language: str | None = None
    output_uri: str | None = None
    error: JobError | None = None
    units_total: int | None = None
    units_done: list[int] = Field(default_factory=list)
    # Deliveries of each piece ("plan", or a unit's number): Pub/Sub retries count here.
    deliveries: dict[str, int] = Field(default_factory=dict)
    # The local queue's process that holds the job (host:pid); unused with Pub/Sub.
    queued_by: str | None = None

    @property
    def attempts(self) -> int:
        """The most deliveries any one piece of the job took (1: nothing was retried)."""
        return max(self.deliveries.values(), default=0)


def new_job_id() -> str:
    """Sortable by creation time (milliseconds, hex), then 48 random bits."""
    return f"job_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class Window(BaseModel):
    """A piece of the audio, in seconds on the recording's timeline."""

    start: float
    end: float


class Unit(BaseModel):
    """One message's worth of work: consecutive windows, their audio stored apart
    (with diarize=channel, of one channel: 0 left, 1 right)."""

    start: float
    end: float
    windows: list[Window]
    channel: int | None = None


class UnitSpec(BaseModel):
    """What a unit's delivery needs, stored as soon as the unit is final (before the
    plan as a whole is): its windows, and the language every unit decodes in."""

    unit: Unit
    language: str | None = None


class Plan(BaseModel):
    """How a job's audio was cut, made once by whoever handled its plan message."""

    duration: float
    language: str | None = None
    language_probability: float = 0.0
    units: list[Unit]


class UnitCheckpoint(BaseModel):
    """A unit's windows done so far and their segments (timeline times)."""

    windows_done: int = 0
    segments: list[Segment] = Field(default_factory=list)


TRANSCRIPTION = TypeAdapter(Transcription)
