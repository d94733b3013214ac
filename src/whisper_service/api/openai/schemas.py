"""The OpenAI-compatible API's answers, in the shapes of the ``openai`` SDK's
``types/audio`` and ``types/model``, plus what this service adds to them (marked)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from whisper_service.api.schemas import SegmentOut, Usage, omitted_when_none
from whisper_service.engines import Word


class Logprob(BaseModel):
    """The log probability Whisper's alignment gives one word of the transcript (the
    mean probability of its tokens), in OpenAI's shape."""

    token: str
    logprob: float
    bytes: list[int]

    @classmethod
    def of(cls, word: Word) -> Logprob:
        """A word's entry."""
        probability = min(1.0, max(word.probability, 1e-10))
        return cls(token=word.word, logprob=math.log(probability), bytes=list(word.word.encode()))


class OpenAITranscription(BaseModel):
    """OpenAI's json response."""

    text: str
    usage: Usage
    logprobs: list[Logprob] | None = omitted_when_none("With include[]=logprobs")


class OpenAIWord(BaseModel):
    """OpenAI's word (no probability)."""

    word: str
    start: float
    end: float


class OpenAIVerboseTranscription(BaseModel):
    """OpenAI's verbose_json response; ``words`` with timestamp_granularities[]=word."""

    task: str
    language: str = Field(description="Whisper's English name of the language")
    duration: float
    text: str
    segments: list[SegmentOut]
    words: list[OpenAIWord] | None = omitted_when_none("With timestamp_granularities[]=word")
    usage: Usage


class TranscriptTextDelta(BaseModel):
    """stream=true: a segment's text as soon as it is decoded."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    logprobs: list[Logprob] | None = omitted_when_none("With include[]=logprobs")


class TranscriptTextDone(BaseModel):
    """stream=true: the last event, the whole text (the deltas joined)."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: Usage
    logprobs: list[Logprob] | None = omitted_when_none("With include[]=logprobs")


class DiarizedSegment(BaseModel):
    """diarized_json: a segment with its speaker (OpenAI's
    ``TranscriptionDiarizedSegment``); with stream=true, the same as an event."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    speaker: str = Field(description="A known speaker's name, else A, B, ... in order")
    text: str


class OpenAIDiarizedTranscription(BaseModel):
    """response_format=diarized_json (OpenAI's ``TranscriptionDiarized``)."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: Usage


class ModelCard(BaseModel):
    """A model this instance serves."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str
    engine: str
    loaded: bool
    multilingual: bool | None
    max_upload_bytes: int = Field(description="Largest file accepted (413 beyond)")
    max_audio_seconds: float = Field(description="Longest audio accepted (413 beyond)")


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
