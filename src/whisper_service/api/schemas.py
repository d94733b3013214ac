"""Response shapes of every route, as pydantic models: the OpenAPI document (``/docs``)
describes each answer from these, and handlers build their JSON through them."""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from whisper_service.diarization.attribution import speakers_in
from whisper_service.engines import Segment, Transcription
from whisper_service.formats import segment_dict


def json_response(
    model: BaseModel, status: int = 200, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``model`` as a JSON response (for routes whose status or headers vary)."""
    return JSONResponse(model.model_dump(mode="json"), status, headers=headers)


def _is_none(value: object) -> bool:
    return value is None


def omitted_when_none(description: str | None = None) -> Any:
    """A field that is left out of the answer, rather than null, when there is nothing
    to say (words nobody asked for, a result that does not exist yet)."""
    return Field(None, exclude_if=_is_none, description=description)


# --- errors ---


class ErrorDetail(BaseModel):
    """What went wrong, OpenAI's error shape plus the request id."""

    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error, server_error...")
    param: str | None = Field(description="The request parameter at fault, if one is")
    code: str = Field(description="Stable machine-readable code (docs/api.md lists them)")
    request_id: str | None


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: ErrorDetail


# --- transcripts ---


class WordOut(BaseModel):
    """One word with its timing (seconds) and probability."""

    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = omitted_when_none("With diarize")


class SegmentOut(BaseModel):
    """One segment in openai-whisper's field names; ``words`` when word timestamps were
    asked for."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[WordOut] | None = omitted_when_none("With word_timestamps")
    speaker: str | None = omitted_when_none("With diarize")

    @classmethod
    def of(cls, segment: Segment, *, with_words: bool) -> SegmentOut:
        """A segment as the API shows it (the same fields as a saved transcript)."""
        return cls.model_validate(segment_dict(segment, with_words=with_words))


class Usage(BaseModel):
    """What the request used, as OpenAI reports it for Whisper: seconds of audio
    (rounded up to a whole second)."""

    type: Literal["duration"] = "duration"
    seconds: int

    @classmethod
    def of(cls, duration: float) -> Usage:
        """The usage of ``duration`` seconds of audio."""
        return cls(seconds=math.ceil(round(duration, 3)))


class Utterance(BaseModel):
    """What one speaker said before another spoke."""

    speaker: str
    start: float
    end: float
    text: str

    @classmethod
    def all_of(cls, segments: list[Segment]) -> list[Utterance]:
        """The segments' speakers' turns, in order."""
        found: list[Utterance] = []
        for segment in segments:
            if segment.speaker is None:
                continue
            if found and found[-1].speaker == segment.speaker:
                last = found[-1]
                last.end = round(segment.end, 3)
                last.text = f"{last.text} {segment.text.strip()}".strip()
            else:
                found.append(
                    cls(
                        speaker=segment.speaker,
                        start=round(segment.start, 3),
                        end=round(segment.end, 3),
                        text=segment.text.strip(),
                    )
                )
        return found


def speaker_fields(transcription: Transcription) -> dict[str, Any]:
    """``speakers`` and ``utterances`` of a diarized transcript, as the json answers of
    /transcribe and a job's result carry them."""
    return {
        "speakers": speakers_in(transcription),
        "utterances": Utterance.all_of(transcription.segments),
    }


class TranscriptionOut(BaseModel):
    """/transcribe with response_format=json."""

    text: str
    language: str
    language_probability: float
    duration: float = Field(description="Seconds of audio")
    model: str
    engine: str
    processing_seconds: float
    usage: Usage
    output_uri: str | None = omitted_when_none("Where save_to_gcs wrote the transcript")
    speakers: list[str] | None = omitted_when_none(
        "With diarize: the speakers, in order of first appearance"
    )
    utterances: list[Utterance] | None = omitted_when_none(
        "With diarize: who said what, each speaker's consecutive segments joined"
    )


class VerboseTranscriptionOut(TranscriptionOut):
    """/transcribe with response_format=verbose_json: the segments too."""

    task: str
    segments: list[SegmentOut]


class LanguageCandidate(BaseModel):
    """A language and its probability."""

    language: str
    language_name: str
    probability: float


class LanguageDetectionOut(LanguageCandidate):
    """/detect-language: the most likely language and the top candidates."""

    top: list[LanguageCandidate]
    duration: float
    model: str


# --- streams (stream=true) ---


class TranscriptSegmentEvent(SegmentOut):
    """/transcribe with stream=true: a segment, with its timestamps, as soon as it is
    decoded."""

    type: Literal["transcript.segment"] = "transcript.segment"


class TranscriptDoneEvent(TranscriptionOut):
    """/transcribe with stream=true: the last event, the whole transcript."""

    type: Literal["transcript.done"] = "transcript.done"
    segments: list[SegmentOut] | None = omitted_when_none("With response_format=verbose_json")


class StreamError(ErrorResponse):
    """A failure after a stream started (its status is already 200)."""

    type: Literal["error"] = "error"


# --- health ---


class Live(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"


class Startup(BaseModel):
    """Whether the model has loaded (503 while ``loading``)."""

    status: Literal["started", "loading"]
    load_seconds: float | None = omitted_when_none()


class QueueState(BaseModel):
    """Inference workers and the queue in front of them: up to ``workers`` x
    ``batch_size`` requests run at once (``WHISPER_BATCH_MAX_SIZE``); ``decoding``:
    admitted requests still decoding their audio, counted against the capacity."""

    workers: int
    batch_size: int
    running: int
    waiting: int
    decoding: int
    capacity: int


ReadyStatus = Literal["ready", "loading", "draining", "overloaded"]


class Readiness(BaseModel):
    """Whether this instance should get traffic (503 unless ``ready``)."""

    status: ReadyStatus
    model_loaded: bool
    queue: QueueState


class ModelReadiness(BaseModel):
    """KServe v2 model readiness."""

    name: str
    ready: bool
    status: str


class Threshold(BaseModel):
    """Where a check turns degraded and unhealthy (None: never)."""

    degraded: float | None
    unhealthy: float | None


class Trend(BaseModel):
    """A figure over the health window."""

    mean: float
    p95: float
    max: float
    samples: int


class HealthCheckOut(BaseModel):
    """One check's verdict on its latest figure, with its trend over the window."""

    status: Literal["healthy", "degraded", "unhealthy"]
    value: float | None
    unit: str
    threshold: Threshold
    message: str
    trend: Trend | None = Field(None, description="Over the window, for sampled figures")


class InFlightOut(BaseModel):
    """A request being served."""

    request_id: str
    method: str
    path: str
    started_at: float
    age_seconds: float


class HealthReport(BaseModel):
    """GET /health: every check and the process's state (503 when unhealthy)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    sampled_at: float | None
    window_seconds: float
    checks: dict[str, HealthCheckOut]
    version: str
    pid: int | None = omitted_when_none("With an admin key")
    engine: str
    model: str
    model_loaded: bool
    uptime_seconds: float
    started_at: float
    draining: bool
    in_flight_count: int
    in_flight: list[InFlightOut] | None = omitted_when_none("Ids and paths: with an admin key")
    queue: QueueState
    jobs: dict[str, Any] | None = Field(
        description="What this instance holds (its store and name with an admin key); "
        "null without /jobs"
    )


# --- jobs ---


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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all in the error shape."""
    return {status: {"model": ErrorResponse} for status in statuses}
