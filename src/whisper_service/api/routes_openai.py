"""OpenAI-compatible endpoints, so the official ``openai`` SDK works unchanged.

Contract: the multipart fields of OpenAI's ``audio.transcriptions.create`` and
``audio.translations.create``, answered in its json / text / srt / verbose_json / vtt
shapes with ``usage``, or as server-sent events with ``stream=true``. A field OpenAI
does not define is refused, as OpenAI refuses it; one Whisper cannot honour is refused
with a message saying so (``openai_params``). Client faults are 4xx: the SDK retries
every 5xx.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

from whisper_service.api.deps import EngineDep, RuntimeDep
from whisper_service.api.forms import parse_language
from whisper_service.api.openai_answers import (
    diarized_body,
    diarized_stream_events,
    json_body,
    stream_events,
    verbose_body,
)
from whisper_service.api.openai_params import (
    TRANSLATION_FIELDS,
    check_known_fields,
    check_transcription_form,
    known_speaker_fields,
)
from whisper_service.api.openai_schemas import (
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
from whisper_service.api.request_audio import Upload
from whisper_service.api.schemas import StreamError, error_responses
from whisper_service.api.speaker_params import Diarize, diarize_options, known_voices
from whisper_service.api.sse import stream_transcription
from whisper_service.api.transcription import TEXT_FORMAT_CONTENT, render, transcribe
from whisper_service.engines import Engine, Task, TranscribeOptions, VadSettings
from whisper_service.engines.base import MAX_PROMPT_CHARS
from whisper_service.errors import InvalidParameter, ServiceError
from whisper_service.formats import ResponseFormat
from whisper_service.serving.runtime import OPENAI_MODEL_ALIAS, Runtime

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

Granularity = Literal["word", "segment"]
# ResponseFormat's values, and OpenAI's diarized_json (speakers; a json answer).
OpenAIFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "tsv", "diarized_json"]
STREAMABLE = (ResponseFormat.JSON, ResponseFormat.TEXT)


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
        **error_responses(400, 401, 404, 413, 415, 429, 503, 504),
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


def _check_diarization(
    diarized: bool, prompt: str | None, logprobs: bool, known: tuple[list[str], list[str]]
) -> None:
    """OpenAI's rules for its diarizing model: no prompt, no logprobs; known speakers
    only with diarized_json."""
    if not diarized:
        if known[0] or known[1]:
            raise InvalidParameter(
                "known_speaker_names[] and known_speaker_references[] label the speakers "
                "of response_format=diarized_json",
                param="known_speaker_names",
            )
        return
    if prompt:
        raise InvalidParameter(
            "prompt is not supported with diarization (response_format=diarized_json)",
            param="prompt",
        )
    if logprobs:
        raise InvalidParameter(
            "include[]=logprobs is not supported with response_format=diarized_json",
            param="include",
        )


def _check_combinations(
    response_format: ResponseFormat, granularities: list[Granularity], logprobs: bool, stream: bool
) -> None:
    """400 for options that cannot go together, as OpenAI refuses them."""
    if granularities and response_format is not ResponseFormat.VERBOSE_JSON:
        raise InvalidParameter(
            "timestamp_granularities requires response_format=verbose_json",
            param="timestamp_granularities",
        )
    if logprobs and response_format is not ResponseFormat.JSON:
        raise InvalidParameter("include[]=logprobs requires response_format=json", param="include")
    if stream and response_format not in STREAMABLE:
        raise InvalidParameter(
            "stream=true answers server-sent events of text: response_format must be "
            f"json or text, not {response_format.value}",
            param="stream",
        )


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
    response_format: OpenAIFormat,
    temperature: float,
    granularities: list[Granularity],
    logprobs: bool = False,
    stream: bool = False,
    chunking: VadSettings | None = None,
    known: tuple[list[str], list[str]] = ([], []),
) -> Response:
    _check_model(model, runtime)
    diarized = response_format == "diarized_json"
    if diarized and task == "translate":
        raise InvalidParameter("diarized_json is a transcription format", param="response_format")
    # A diarized answer is json with speakers.
    fmt = ResponseFormat.JSON if diarized else ResponseFormat(response_format)
    _check_combinations(fmt, granularities, logprobs, stream)
    _check_diarization(diarized, prompt, logprobs, known)
    diarization = None
    if diarized:
        # Refused (diarization off) before any reference clip is decoded.
        diarization = diarize_options(runtime.settings, Diarize.TRUE, None, None)
        if diarization is not None and (known[0] or known[1]):
            diarization = replace(diarization, known=await known_voices(*known))
    words = "word" in granularities
    options = TranscribeOptions(
        language=parse_language(language),
        task=task,
        beam_size=runtime.settings.default_beam_size,
        temperature=temperature,
        prompt=prompt or None,
        # Whisper's word alignment is where the probabilities come from.
        word_timestamps=words or logprobs,
        vad_filter=chunking is not None,
        vad=chunking or VadSettings(),
    )
    source = Upload(file)
    if stream:
        events = diarized_stream_events() if diarized else stream_events(logprobs=logprobs)
        return await stream_transcription(
            request, runtime, engine, options, source, events, diarization
        )
    result = await transcribe(request, runtime, engine, options, source, diarization)
    body: BaseModel
    if diarized:
        body = diarized_body(result)
    elif fmt is ResponseFormat.VERBOSE_JSON:
        body = verbose_body(result, task, words=words)
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
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = OPENAI_MODEL_ALIAS,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    response_format: Annotated[OpenAIFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: Annotated[
        bool, Form(description="Answer with server-sent events as segments are decoded")
    ] = False,
    include: Annotated[
        list[Literal["logprobs"]] | None,
        Form(alias="include[]", description="logprobs: per-word log probabilities (json)"),
    ] = None,
    # Declared for the OpenAPI document; check_transcription_form reads it from the
    # form with its bracketed variants.
    chunking_strategy: Annotated[
        str | None,
        Form(
            description='"auto", or a server_vad object as JSON; the SDK\'s '
            "chunking_strategy[type|threshold|prefix_padding_ms|silence_duration_ms] "
            "fields are read too"
        ),
    ] = None,
) -> Response:
    """Transcribe in the source language; with response_format=diarized_json, who
    said what."""
    form = await request.form()
    chunking = check_transcription_form(form)
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
        logprobs=bool(include),
        stream=stream,
        chunking=chunking,
        known=known_speaker_fields(form),
    )


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
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = OPENAI_MODEL_ALIAS,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    response_format: Annotated[OpenAIFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    """Translate speech in any language into English text."""
    check_known_fields(await request.form(), TRANSLATION_FIELDS)
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
