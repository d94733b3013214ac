"""Response shapes the routes share, as pydantic models: the error shape, transcripts,
segments and words, stream events. The OpenAPI document (``/docs``) describes each
answer from these, and handlers build their JSON through them; what only one audience
answers is beside its routes (``openai/schemas``, ``native/schemas``,
``ops/schemas``)."""

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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all in the error shape."""
    return {status: {"model": ErrorResponse} for status in statuses}
