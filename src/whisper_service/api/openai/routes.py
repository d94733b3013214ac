"""OpenAI-compatible endpoints, so the official ``openai`` SDK works unchanged.

Contract: the multipart fields of OpenAI's ``audio.transcriptions.create`` and
``audio.translations.create`` (parsed and checked as one model each, ``request``),
answered in its json / text / srt / verbose_json / vtt shapes with ``usage``, or as
server-sent events with ``stream=true``. Client faults are 4xx: the SDK retries every
5xx.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import BaseModel

from whisper_service.api.deps import EngineDep, RuntimeDep
from whisper_service.api.openai.answers import (
    diarized_body,
    diarized_stream_events,
    json_body,
    stream_events,
    verbose_body,
)
from whisper_service.api.openai.request import TranscriptionRequest, TranslationRequest
from whisper_service.api.openai.schemas import (
    DiarizedSegment,
    ModelCard,
    ModelList,
    OpenAIDiarizedTranscription,
    OpenAITranscription,
    OpenAIVerboseTranscription,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from whisper_service.api.openapi import event_stream
from whisper_service.api.params import Diarize, diarize_options, known_voices
from whisper_service.api.request_audio import Upload
from whisper_service.api.schemas import StreamError, error_responses
from whisper_service.api.sse import stream_transcription
from whisper_service.api.transcription import TEXT_FORMAT_CONTENT, render, transcribe
from whisper_service.diarization.speakers import DiarizeOptions
from whisper_service.engines import Engine
from whisper_service.errors import ServiceError
from whisper_service.formats import ResponseFormat
from whisper_service.serving.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


def _responses(*, streams: bool) -> dict[int | str, dict[str, Any]]:
    content = dict(TEXT_FORMAT_CONTENT)
    if streams:
        content |= event_stream(
            TranscriptTextDelta, DiarizedSegment, TranscriptTextDone, StreamError
        )
    return {
        200: {
            "model": OpenAITranscription | OpenAIVerboseTranscription | OpenAIDiarizedTranscription,
            "content": content,
            "description": "The transcript in response_format; events with stream=true",
        },
        **error_responses(400, 401, 404, 413, 415, 422, 429, 503, 504),
    }


def _check_model(requested: str, runtime: Runtime) -> None:
    if requested not in runtime.served_model_ids():
        raise ServiceError(
            f"the model {requested!r} is not served here; available: "
            f"{', '.join(runtime.served_model_ids())}",
            code="model_not_found",
            status=404,
            param="model",
        )


async def _speakers(runtime: Runtime, form: TranscriptionRequest) -> DiarizeOptions | None:
    """The diarization a diarized_json answer needs, with its known speakers' clips
    decoded; refused (diarization off) before any clip is decoded."""
    if not form.diarized:
        return None
    diarization = diarize_options(runtime.settings, Diarize.TRUE, None, None)
    if diarization is not None and form.known_speaker_names:
        known = await known_voices(form.known_speaker_names, form.known_speaker_references)
        diarization = replace(diarization, known=known)
    return diarization


async def _answer(
    request: Request,
    runtime: Runtime,
    engine: Engine,
    form: TranscriptionRequest | TranslationRequest,
) -> Response:
    """Run a checked request through the pipeline and answer it in OpenAI's shape:
    events with stream=true, else the body its response_format asks for."""
    _check_model(form.model, runtime)
    options = form.options(runtime.settings)
    diarization = None
    if isinstance(form, TranscriptionRequest):
        diarized, logprobs, words, stream = form.diarized, form.logprobs, form.words, form.stream
        diarization = await _speakers(runtime, form)
    else:
        diarized = logprobs = words = stream = False
    source = Upload(form.file)
    if stream:
        events = diarized_stream_events() if diarized else stream_events(logprobs=logprobs)
        return await stream_transcription(
            request, runtime, engine, options, source, events, diarization
        )
    result = await transcribe(request, runtime, engine, options, source, diarization)
    fmt = form.format()
    body: BaseModel
    if diarized:
        body = diarized_body(result)
    elif fmt is ResponseFormat.VERBOSE_JSON:
        body = verbose_body(result, options.task, words=words)
    else:
        body = json_body(result, logprobs=logprobs)
    return render(result, fmt, body)


@router.post(
    "/audio/transcriptions",
    summary="OpenAI-compatible transcription",
    response_model=None,
    responses=_responses(streams=True),
)
async def transcriptions(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    form: Annotated[TranscriptionRequest, Form(media_type="multipart/form-data")],
) -> Response:
    """Transcribe in the source language; with response_format=diarized_json, who
    said what."""
    return await _answer(request, runtime, engine, form)


@router.post(
    "/audio/translations",
    summary="OpenAI-compatible translation to English",
    response_model=None,
    responses=_responses(streams=False),
)
async def translations(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    form: Annotated[TranslationRequest, Form(media_type="multipart/form-data")],
) -> Response:
    """Translate speech in any language into English text."""
    return await _answer(request, runtime, engine, form)


@router.get("/models", summary="Models this instance serves", responses=error_responses(401, 429))
async def list_models(runtime: RuntimeDep) -> ModelList:
    """The configured model (and its OpenAI alias) with load state and request limits."""
    engine = runtime.engine
    settings = runtime.settings
    return ModelList(
        data=[
            ModelCard(
                id=model_id,
                created=int(runtime.started_at),
                owned_by="whisper-service",
                root=runtime.model_name,
                engine=settings.engine.value,
                loaded=engine is not None,
                multilingual=engine.multilingual if engine is not None else None,
                max_upload_bytes=settings.max_upload_bytes,
                max_audio_seconds=settings.max_audio_seconds,
            )
            for model_id in runtime.served_model_ids()
        ]
    )
