"""The service's own API: POST /transcribe and POST /detect-language."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from whisper_service.api.deps import EngineDep, RuntimeDep
from whisper_service.api.native.form import TranscriptionForm
from whisper_service.api.openapi import event_stream
from whisper_service.api.request_audio import AudioSource, GcsObject, Upload
from whisper_service.api.schemas import (
    LanguageCandidate,
    LanguageDetectionOut,
    SegmentOut,
    StreamError,
    TranscriptDoneEvent,
    TranscriptionOut,
    TranscriptSegmentEvent,
    Usage,
    VerboseTranscriptionOut,
    error_responses,
    speaker_fields,
)
from whisper_service.api.sse import EventFormat, stream_transcription
from whisper_service.api.transcription import TEXT_FORMAT_CONTENT, infer, render, transcribe
from whisper_service.engines import Engine, Segment, TranscribeOptions, Transcription
from whisper_service.engines.base import require_multilingual
from whisper_service.engines.languages import language_name
from whisper_service.errors import InvalidParameter, ServiceError
from whisper_service.formats import MEDIA_TYPES, ResponseFormat, transcript_file
from whisper_service.observability.context import request_id_var
from whisper_service.serving.runtime import Runtime

router = APIRouter(tags=["transcription"])


@router.post(
    "/transcribe",
    summary="Transcribe or translate an audio file",
    response_model=None,
    responses={
        200: {
            "model": TranscriptionOut | VerboseTranscriptionOut,
            "content": TEXT_FORMAT_CONTENT
            | event_stream(TranscriptSegmentEvent, TranscriptDoneEvent, StreamError),
            "description": "The transcript in response_format; events with stream=true",
        },
        **error_responses(400, 401, 404, 413, 415, 422, 429, 502, 503, 504),
    },
)
async def transcribe_route(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    form: Annotated[TranscriptionForm, Depends()],
    stream: Annotated[
        bool,
        Form(description="Server-sent events: each segment as it is decoded, then the whole"),
    ] = False,
) -> Response:
    """Transcribe ``file`` (or the object at ``gcs_uri``); the answer's shape follows
    ``response_format``, or is a stream of events with ``stream=true``."""
    settings = runtime.settings
    form.check_source(settings)
    options = form.options(settings)
    diarization = form.diarization(settings)
    verbose = form.response_format is ResponseFormat.VERBOSE_JSON
    started = time.monotonic()
    source: AudioSource = Upload(form.file) if form.file else GcsObject(str(form.gcs_uri))
    if stream:
        if form.response_format not in (ResponseFormat.JSON, ResponseFormat.VERBOSE_JSON):
            raise InvalidParameter(
                "stream=true answers server-sent events of JSON: response_format must be "
                f"json or verbose_json, not {form.response_format.value}",
                param="stream",
            )

        def segment_event(segment: Segment) -> dict[str, Any] | None:
            if diarization is not None:
                return None  # sent once the speakers are known (finished_events)
            event = TranscriptSegmentEvent.of(segment, with_words=options.word_timestamps)
            return event.model_dump(mode="json")

        def finished_events(result: Transcription) -> list[dict[str, Any]]:
            if diarization is None:
                return []
            return [
                TranscriptSegmentEvent.of(s, with_words=options.word_timestamps).model_dump(
                    mode="json"
                )
                for s in result.segments
            ]

        async def done_event(result: Transcription) -> dict[str, Any]:
            output_uri = await _save_if_asked(runtime, result, form)
            event = TranscriptDoneEvent(
                **_summary(result, engine, started, output_uri, diarization is not None),
                segments=_segments(result, options) if verbose else None,
            )
            return event.model_dump(mode="json")

        events = EventFormat(segment=segment_event, done=done_event, finished=finished_events)
        return await stream_transcription(
            request, runtime, engine, options, source, events, diarization
        )
    result = await transcribe(request, runtime, engine, options, source, diarization)
    output_uri = await _save_if_asked(runtime, result, form)
    body = TranscriptionOut(
        **_summary(result, engine, started, output_uri, diarization is not None)
    )
    if verbose:
        body = VerboseTranscriptionOut(
            **body.model_dump(), task=options.task, segments=_segments(result, options)
        )
    response = render(result, form.response_format, body)
    if output_uri:
        response.headers["X-Output-URI"] = output_uri
    return response


def _summary(
    result: Transcription,
    engine: Engine,
    started: float,
    output_uri: str | None,
    diarized: bool = False,
) -> dict[str, Any]:
    """The fields every json answer of /transcribe has."""
    return {
        "text": result.text,
        "language": result.language,
        "language_probability": round(result.language_probability, 4),
        "duration": round(result.duration, 3),
        "model": engine.model_name,
        "engine": engine.name,
        "processing_seconds": round(time.monotonic() - started, 3),
        "usage": Usage.of(result.duration),
        "output_uri": output_uri,
        **(speaker_fields(result) if diarized else {}),
    }


def _segments(result: Transcription, options: TranscribeOptions) -> list[SegmentOut]:
    return [SegmentOut.of(s, with_words=options.word_timestamps) for s in result.segments]


async def _save_if_asked(
    runtime: Runtime, result: Transcription, form: TranscriptionForm
) -> str | None:
    if not form.save_to_gcs:
        return None
    return await save_transcript(runtime, result, form.response_format)


async def save_transcript(
    runtime: Runtime, result: Transcription, response_format: ResponseFormat
) -> str:
    """Write the transcript in ``response_format`` to the configured GCS prefix, named
    after the request id; return its gs:// URI."""
    content, extension = transcript_file(result, response_format)
    request_id = request_id_var.get() or "transcript"
    try:
        return await asyncio.to_thread(
            runtime.storage.upload_text, request_id, extension, content,
            MEDIA_TYPES[response_format],
        )  # fmt: skip
    except ServiceError as exc:
        exc.about("save_to_gcs")
        raise


@router.post(
    "/detect-language",
    summary="Detect the spoken language (first 30 s)",
    responses=error_responses(400, 401, 413, 415, 422, 429, 503, 504),
)
async def detect_language(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    file: Annotated[UploadFile, File(description="Audio file")],
    top: Annotated[int, Form(ge=1, le=100)] = 5,
) -> LanguageDetectionOut:
    """The most likely language and the ``top`` candidates with probabilities."""
    require_multilingual(engine)
    probs, duration = await infer(
        request,
        runtime,
        Upload(file),
        lambda samples, _t: engine.detect_language(samples),
        task="detect_language",
        max_seconds=30.0,
    )
    best, probability = probs[0]
    candidates = [
        LanguageCandidate(language=code, language_name=language_name(code), probability=round(p, 4))
        for code, p in probs[:top]
    ]
    return LanguageDetectionOut(
        language=best,
        language_name=language_name(best),
        probability=round(probability, 4),
        top=candidates,
        duration=round(duration, 3),
        model=engine.model_name,
    )
