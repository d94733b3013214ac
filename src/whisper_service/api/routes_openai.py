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
from pydantic import BaseModel

from whisper_service.api.deps import EngineDep, RuntimeDep
from whisper_service.api.forms import MAX_PROMPT_CHARS, parse_language
from whisper_service.api.schemas import (
    ModelCard,
    ModelList,
    OpenAITranscription,
    OpenAIVerboseTranscription,
    OpenAIWord,
    SegmentOut,
    error_responses,
)
from whisper_service.api.sources import Upload
from whisper_service.api.transcription import TEXT_FORMAT_CONTENT, render, transcribe
from whisper_service.engines import Engine, Task, TranscribeOptions, Transcription
from whisper_service.engines.languages import language_name
from whisper_service.errors import InvalidParameter, ServiceError
from whisper_service.formats import ResponseFormat
from whisper_service.serving.runtime import OPENAI_MODEL_ALIAS, Runtime

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

Granularity = Literal["word", "segment"]
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": OpenAITranscription | OpenAIVerboseTranscription,
        "content": TEXT_FORMAT_CONTENT,
        "description": "The transcript in response_format",
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


def _verbose(result: Transcription, task: Task, words: bool) -> OpenAIVerboseTranscription:
    body = OpenAIVerboseTranscription(
        task=task,
        language=language_name(result.language),
        duration=round(result.duration, 3),
        text=result.text,
        segments=[SegmentOut.of(s, with_words=False) for s in result.segments],
    )
    if words:
        body.words = [
            OpenAIWord(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3))
            for w in result.words
        ]
    return body


async def _handle(
    request: Request,
    runtime: Runtime,
    engine: Engine,
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
    _check_model(model, runtime)
    if granularities and response_format is not ResponseFormat.VERBOSE_JSON:
        raise InvalidParameter(
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
    result = await transcribe(request, runtime, engine, options, Upload(file))
    body: BaseModel
    if response_format is ResponseFormat.VERBOSE_JSON:
        body = _verbose(result, task, words)
    else:
        body = OpenAITranscription(text=result.text)
    return render(result, response_format, body)


@router.post(
    "/audio/transcriptions",
    summary="OpenAI-compatible transcription",
    response_model=None,
    responses=RESPONSES,
)
async def transcriptions(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
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
        runtime,
        engine,
        task="transcribe",
        file=file,
        model=model,
        language=language,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=timestamp_granularities or [],
    )


@router.post(
    "/audio/translations",
    summary="OpenAI-compatible translation to English",
    response_model=None,
    responses=RESPONSES,
)
async def translations(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = OPENAI_MODEL_ALIAS,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.JSON,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    """Translate speech in any language into English text."""
    return await _handle(
        request,
        runtime,
        engine,
        task="translate",
        file=file,
        model=model,
        language=None,
        prompt=prompt,
        response_format=response_format,
        temperature=temperature,
        granularities=[],
    )


@router.get("/models", summary="Models this instance serves", responses=error_responses(401, 429))
async def list_models(runtime: RuntimeDep) -> ModelList:
    """The configured model (and its OpenAI alias) with load state."""
    engine = runtime.engine
    name = runtime.model_name
    return ModelList(
        data=[
            ModelCard(
                id=model_id,
                created=int(runtime.started_at),
                owned_by="whisper-service",
                root=name,
                engine=runtime.settings.engine.value,
                loaded=engine is not None,
                multilingual=engine.multilingual if engine is not None else None,
            )
            for model_id in runtime.served_model_ids()
        ]
    )
