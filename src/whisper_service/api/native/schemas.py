"""What the /jobs routes answer, as pydantic models (the OpenAPI document shows
them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from whisper_service.api.schemas import SegmentOut, Utterance, omitted_when_none


class JobProgressOut(BaseModel):
    """Audio transcribed so far; windows are the <= 30 s pieces the audio is cut into."""

    audio_seconds_done: float
    audio_seconds_total: float | None
    windows_done: int
    windows_total: int | None
    percent: float


class JobErrorOut(BaseModel):
    """Why a job failed or was cancelled."""

    code: str
    message: str


class JobTranscript(BaseModel):
    """A finished job's transcript: ``text``, and with verbose_json the rest."""

    text: str
    task: str | None = omitted_when_none()
    language: str | None = omitted_when_none()
    language_probability: float | None = omitted_when_none()
    duration: float | None = omitted_when_none()
    segments: list[SegmentOut] | None = omitted_when_none()
    speakers: list[str] | None = omitted_when_none("With diarize")
    utterances: list[Utterance] | None = omitted_when_none("With diarize")


class JobUnitsOut(BaseModel):
    """The pieces the job's audio was cut into, each transcribed by any instance."""

    total: int | None = Field(description="Known once the job is planned")
    done: int


class JobView(BaseModel):
    """A job: status, progress, and once it succeeded, where its result is."""

    id: str
    object: Literal["transcription.job"] = "transcription.job"
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    status_url: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    progress: JobProgressOut
    source: dict[str, Any]
    options: dict[str, Any]
    language: str | None
    units: JobUnitsOut
    attempts: int = Field(
        description="The most deliveries any one piece of the job took (1: none retried)"
    )
    expires_at: str | None = Field(description="When a finished job is deleted")
    error: JobErrorOut | None
    result_url: str | None = omitted_when_none("Once the job succeeded")
    output_uri: str | None = omitted_when_none("Where save_to_gcs wrote the transcript")
    result: JobTranscript | None = omitted_when_none("GET /jobs/{id} of a succeeded job")


class JobList(BaseModel):
    """GET /jobs: the caller's jobs, newest first."""

    object: Literal["list"] = "list"
    data: list[JobView]
