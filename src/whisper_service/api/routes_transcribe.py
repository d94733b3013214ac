"""The service's own API: POST /transcribe and POST /detect-language."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from whisper_service.api.errors import ApiError
from whisper_service.api.inference import (
    admit_or_reject,
    deadline_token,
    ready_engine,
    run_inference,
    runtime_of,
)
from whisper_service.api.uploads import decode_gcs, decode_upload
from whisper_service.audio import DecodedAudio
from whisper_service.engines.base import (
    Engine,
    Task,
    TranscribeOptions,
    Transcription,
    UnsupportedOption,
    check_options,
    require_multilingual,
)
from whisper_service.engines.languages import language_name, normalize_language
from whisper_service.formats import (
    MEDIA_TYPES,
    TEXT_WRITERS,
    ResponseFormat,
    segment_dict,
    transcript_file,
)
from whisper_service.lifecycle import Runtime
from whisper_service.observability.context import request_id_var
from whisper_service.settings import Settings
from whisper_service.storage import StorageError

router = APIRouter(tags=["transcription"])
log = structlog.get_logger(__name__)

MAX_PROMPT_CHARS = 2000


def parse_language(value: str | None) -> str | None:
    """Validate a language field (code or English name)."""
    try:
        return normalize_language(value)
    except ValueError as exc:
        raise ApiError(400, "invalid_language", str(exc), param="language") from exc


def check_engine_options(engine: Engine, options: TranscribeOptions) -> None:
    """Reject options the model cannot honour before any work is done."""
    try:
        check_options(engine, options)
    except UnsupportedOption as exc:
        raise ApiError(400, "unsupported_option", exc.message, param=exc.param) from exc


async def transcribe_audio(
    request: Request,
    engine: Engine,
    options: TranscribeOptions,
    fetch_audio: Callable[[], Awaitable[DecodedAudio]],
) -> Transcription:
    """The request flow every transcription endpoint shares: refuse what the model
    cannot do and what the queue cannot take before touching the audio, then fetch and
    decode it, run the engine on a worker, and log the outcome."""
    check_engine_options(engine, options)
    token = deadline_token(request)
    admit_or_reject(request)
    audio = await fetch_audio()
    result = await run_inference(
        request,
        token,
        lambda t: engine.transcribe(audio.samples, options, t),
        task=options.task,
        audio_seconds=audio.duration,
    )
    log_transcription(runtime_of(request).settings, result)
    return result


def check_source(
    settings: Settings, file: UploadFile | None, gcs_uri: str | None, save_to_gcs: bool
) -> None:
    """Exactly one audio source, and an output location when the caller wants one."""
    if (file is None) == (not gcs_uri):
        raise ApiError(
            400, "invalid_parameter", "send exactly one of file and gcs_uri", param="file"
        )
    if save_to_gcs and not settings.gcs_output_uri:
        raise ApiError(
            400,
            "unsupported_option",
            "save_to_gcs needs WHISPER_GCS_OUTPUT_URI on the server",
            param="save_to_gcs",
        )


def log_transcription(settings: Settings, result: Transcription) -> None:
    """One line per transcription; the text itself only when the operator opted in."""
    fields: dict[str, Any] = {
        "audio_seconds": round(result.duration, 3),
        "language": result.language,
        "segments": len(result.segments),
        "characters": len(result.text),
    }
    if settings.log_transcripts:
        fields["text"] = result.text
    log.info("transcribed", **fields)


def render(
    transcription: Transcription,
    response_format: ResponseFormat,
    json_body: dict[str, Any],
) -> Response:
    """A text format through its writer, json formats as given."""
    if response_format in TEXT_WRITERS:
        body = TEXT_WRITERS[response_format](transcription)
        return PlainTextResponse(body, media_type=MEDIA_TYPES[response_format])
    return JSONResponse(json_body)


@router.post(
    "/transcribe",
    summary="Transcribe or translate an audio file",
    responses={
        400: {"description": "invalid parameter"},
        413: {"description": "file or audio too large"},
        415: {"description": "not decodable audio"},
        429: {"description": "queue full"},
    },
)
async def transcribe(
    request: Request,
    file: Annotated[
        UploadFile | None, File(description="Audio or video file with an audio stream")
    ] = None,
    gcs_uri: Annotated[
        str | None, Form(description="gs://bucket/object instead of a file (allowed buckets)")
    ] = None,
    save_to_gcs: Annotated[
        bool, Form(description="Also write the transcript to WHISPER_GCS_OUTPUT_URI")
    ] = False,
    language: Annotated[str | None, Form(description="ISO 639-1 code; detected if empty")] = None,
    task: Annotated[Task, Form()] = "transcribe",
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.JSON,
    word_timestamps: Annotated[bool, Form()] = False,
    temperature: Annotated[float, Form(ge=0.0, le=1.0, description="0 = fallback schedule")] = 0.0,
    beam_size: Annotated[int | None, Form(ge=1, le=16)] = None,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    vad_filter: Annotated[bool, Form()] = False,
) -> Response:
    """Transcribe ``file`` (or the object at ``gcs_uri``); the answer's shape follows
    ``response_format``."""
    runtime = runtime_of(request)
    engine = ready_engine(request)
    check_source(runtime.settings, file, gcs_uri, save_to_gcs)
    options = TranscribeOptions(
        language=parse_language(language),
        task=task,
        beam_size=beam_size or runtime.settings.default_beam_size,
        temperature=temperature,
        prompt=prompt or None,
        word_timestamps=word_timestamps,
        vad_filter=vad_filter,
    )
    started = time.monotonic()
    if file is not None:
        upload = file
        result = await transcribe_audio(
            request, engine, options, lambda: decode_upload(upload, runtime.settings)
        )
    else:
        uri = str(gcs_uri)
        result = await transcribe_audio(
            request, engine, options, lambda: decode_gcs(uri, runtime.storage, runtime.settings)
        )
    output_uri = None
    if save_to_gcs:
        output_uri = await save_transcript(request, runtime, result, response_format)
    body: dict[str, Any] = {
        "text": result.text,
        "language": result.language,
        "language_probability": round(result.language_probability, 4),
        "duration": round(result.duration, 3),
        "model": engine.model_name,
        "engine": engine.name,
        "processing_seconds": round(time.monotonic() - started, 3),
    }
    if output_uri:
        body["output_uri"] = output_uri
    if response_format is ResponseFormat.VERBOSE_JSON:
        body["task"] = options.task
        body["segments"] = [segment_dict(s, with_words=word_timestamps) for s in result.segments]
    response = render(result, response_format, body)
    if output_uri:
        response.headers["X-Output-URI"] = output_uri
    return response


async def save_transcript(
    request: Request, runtime: Runtime, result: Transcription, response_format: ResponseFormat
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
    except StorageError as exc:
        raise ApiError(exc.status, exc.code, exc.message, param="save_to_gcs") from exc


@router.post("/detect-language", summary="Detect the spoken language (first 30 s)")
async def detect_language(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio file")],
    top: Annotated[int, Form(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    """The most likely language and the ``top`` candidates with probabilities."""
    runtime = runtime_of(request)
    engine = ready_engine(request)
    try:
        require_multilingual(engine)
    except UnsupportedOption as exc:
        raise ApiError(400, "unsupported_option", exc.message, param=exc.param) from exc
    token = deadline_token(request)
    admit_or_reject(request)
    audio = await decode_upload(file, runtime.settings)
    probs = await run_inference(
        request,
        token,
        lambda _t: engine.detect_language(audio.samples),
        task="detect_language",
        audio_seconds=min(audio.duration, 30.0),
    )
    best, probability = probs[0]
    return {
        "language": best,
        "language_name": language_name(best),
        "probability": round(probability, 4),
        "top": [
            {"language": code, "language_name": language_name(code), "probability": round(p, 4)}
            for code, p in probs[:top]
        ],
        "duration": round(audio.duration, 3),
        "model": engine.model_name,
    }
