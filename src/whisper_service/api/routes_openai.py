"""OpenAI-compatible endpoints, so the official ``openai`` SDK works unchanged.

Contract: multipart fields ``file``, ``model``, ``language``, ``prompt``,
``response_format``, ``temperature``, ``timestamp_granularities[]``; answers in
OpenAI's json / text / srt / verbose_json / vtt shapes. Client faults are 4xx: the
SDK retries every 5xx.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from whisper_service.api.errors import ApiError
from whisper_service.api.inference import (
    ready_engine,
    runtime_of,
)
from whisper_service.api.routes_transcribe import (
    MAX_PROMPT_CHARS,
    parse_language,
    render,
    transcribe_audio,
)
from whisper_service.api.uploads import decode_upload
from whisper_service.engines.base import Engine, Task, TranscribeOptions, Transcription
from whisper_service.engines.languages import language_name
from whisper_service.formats import ResponseFormat

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

OPENAI_MODEL_ALIAS = "whisper-1"
Granularity = Literal["word", "segment"]


def served_model_ids(engine_model: str) -> list[str]:
    """Model ids a client may ask for: the loaded model and OpenAI's alias."""
    return [engine_model, OPENAI_MODEL_ALIAS]


def _check_model(requested: str, configured: str) -> None:
    if requested not in served_model_ids(configured):
        raise ApiError(
            404,
            "model_not_found",
            f"the model {requested!r} is not served here; available: "
            f"{', '.join(served_model_ids(configured))}",
            param="model",
        )


def _verbose(result: Transcription, task: Task, words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(result.language),
        "duration": round(result.duration, 3),
        "text": result.text,
        "segments": [
            {
                "id": s.id,
                "seek": s.seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in result.segments
        ],
    }
    if words:
        body["words"] = [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in result.words
        ]
    return body


async def _handle(
    request: Request,
    *,
    task: Task,
    file: UploadFile,
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: ResponseFormat,
    temperature: float,
    granularities: list[Granularity],
) -> Response:
    runtime = runtime_of(request)
    engine: Engine = ready_engine(request)
    _check_model(model, engine.model_name)
    if granularities and response_format is not ResponseFormat.VERBOSE_JSON:
        raise ApiError(
            400,
            "invalid_parameter",
            "timestamp_granularities requires response_format=verbose_json",
            param="timestamp_granularities",
        )
    words = "word" in granularities
    options = TranscribeOptions(
        language=parse_language(language),
        task=task,
        beam_size=runtime.settings.default_beam_size,
        temperature=temperature,
        prompt=prompt or None,
        word_timestamps=words,
    )
    result = await transcribe_audio(
        request, engine, options, lambda: decode_upload(file, runtime.settings)
    )
    if response_format is ResponseFormat.VERBOSE_JSON:
        body = _verbose(result, task, words)
    else:
        body = {"text": result.text}
    return render(result, response_format, body)


@router.post("/audio/transcriptions", summary="OpenAI-compatible transcription")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = OPENAI_MODEL_ALIAS,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.JSON,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    """Transcribe in the source language."""
    return await _handle(
        request,
        task="transcribe",
        file=file,
        model=model,
        language=language,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=timestamp_granularities or [],
    )


@router.post("/audio/translations", summary="OpenAI-compatible translation to English")
async def translations(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = OPENAI_MODEL_ALIAS,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.JSON,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    """Translate speech in any language into English text."""
    return await _handle(
        request,
        task="translate",
        file=file,
        model=model,
        language=None,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=[],
    )


@router.get("/models", summary="Models this instance serves")
async def list_models(request: Request) -> dict[str, Any]:
    """The configured model (and its OpenAI alias) with load state."""
    runtime = runtime_of(request)
    engine = runtime.engine
    name = runtime.artifact.name if runtime.artifact else runtime.settings.model
    created = int(runtime.started_at)
    data = [
        {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "whisper-service",
            "root": name,
            "engine": runtime.settings.engine.value,
            "loaded": engine is not None,
            "multilingual": engine.multilingual if engine is not None else None,
        }
        for model_id in served_model_ids(name)
    ]
    return {"object": "list", "data": data}
