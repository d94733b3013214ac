"""OpenAI's answers built from a transcription: the json and verbose_json bodies and
the events of a stream, each with ``usage`` and, when asked for, ``logprobs``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from whisper_service.api.openai.schemas import (
    DiarizedSegment,
    Logprob,
    OpenAIDiarizedTranscription,
    OpenAITranscription,
    OpenAIVerboseTranscription,
    OpenAIWord,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from whisper_service.api.schemas import SegmentOut, Usage
from whisper_service.api.sse import EventFormat
from whisper_service.engines import Segment, Task, Transcription
from whisper_service.engines.languages import language_name


def _logprobs(segments: Iterable[Segment]) -> list[Logprob]:
    return [Logprob.of(w) for s in segments for w in (s.words or [])]


def json_body(result: Transcription, *, logprobs: bool) -> OpenAITranscription:
    """response_format=json."""
    return OpenAITranscription(
        text=result.text,
        usage=Usage.of(result.duration),
        logprobs=_logprobs(result.segments) if logprobs else None,
    )


def verbose_body(result: Transcription, task: Task, *, words: bool) -> OpenAIVerboseTranscription:
    """response_format=verbose_json; ``words`` with timestamp_granularities[]=word."""
    return OpenAIVerboseTranscription(
        task=task,
        language=language_name(result.language),
        duration=round(result.duration, 3),
        text=result.text,
        segments=[SegmentOut.of(s, with_words=False) for s in result.segments],
        words=[
            OpenAIWord(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3))
            for w in result.words
        ]
        if words
        else None,
        usage=Usage.of(result.duration),
    )


def diarized_segments(result: Transcription) -> list[DiarizedSegment]:
    """The transcript's segments with their speakers, in OpenAI's shape."""
    return [
        DiarizedSegment(
            id=f"seg_{segment.id}",
            start=round(segment.start, 3),
            end=round(segment.end, 3),
            speaker=segment.speaker or "A",
            text=segment.text.strip(),
        )
        for segment in result.segments
    ]


def diarized_body(result: Transcription) -> OpenAIDiarizedTranscription:
    """response_format=diarized_json."""
    return OpenAIDiarizedTranscription(
        duration=round(result.duration, 3),
        text=result.text,
        segments=diarized_segments(result),
        usage=Usage.of(result.duration),
    )


def diarized_stream_events() -> EventFormat:
    """stream=true with diarized_json: nothing while decoding (the speakers are found
    over the whole recording), then a ``transcript.text.segment`` per segment, then
    ``transcript.text.done``."""

    async def done(result: Transcription) -> dict[str, Any]:
        event = TranscriptTextDone(text=result.text, usage=Usage.of(result.duration))
        return event.model_dump(mode="json")

    return EventFormat(
        segment=lambda _: None,
        done=done,
        finished=lambda result: [s.model_dump(mode="json") for s in diarized_segments(result)],
    )


def stream_events(*, logprobs: bool) -> EventFormat:
    """``transcript.text.delta`` per decoded segment, ``transcript.text.done`` last.

    The deltas joined are the done event's text, exactly: the first is stripped of the
    space Whisper puts before a segment, as the non-streamed text is; the others keep
    it, so words do not run together.
    """
    sent: list[str] = []

    def delta(segment: Segment) -> dict[str, Any] | None:
        text = segment.text if sent else segment.text.lstrip()
        if not text:
            return None
        sent.append(text)
        event = TranscriptTextDelta(delta=text, logprobs=_logprobs([segment]) if logprobs else None)
        return event.model_dump(mode="json")

    async def done(result: Transcription) -> dict[str, Any]:
        event = TranscriptTextDone(
            text="".join(sent),
            usage=Usage.of(result.duration),
            logprobs=_logprobs(result.segments) if logprobs else None,
        )
        return event.model_dump(mode="json")

    return EventFormat(segment=delta, done=done)
