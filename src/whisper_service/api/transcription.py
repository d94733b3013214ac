"""The one transcription pipeline every route calls.

A request is parsed by its route (``routes_*``, ``forms``), then here:

1. checked: options the model cannot honour are 400 before any work;
2. admitted: refused at once (503 memory, 429 queue full) before a byte is decoded;
3. decoded: the upload or gs:// object, off the event loop, with limits (``sources``);
4. queued and transcribed: the scheduler runs the engine on an inference thread,
   under the request's deadline, dropping it if the client has left;
5. answered: ``render`` writes the response format.

Every failure on the way is a ServiceError that ``api/errors.py`` renders.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from whisper_service.api.schemas import json_response
from whisper_service.audio import DecodedAudio
from whisper_service.config import Settings
from whisper_service.engines import CancelToken, Engine, TranscribeOptions, Transcription
from whisper_service.engines.base import check_options
from whisper_service.errors import ServiceError
from whisper_service.formats import MEDIA_TYPES, TEXT_WRITERS, ResponseFormat
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.runtime import Runtime
from whisper_service.serving.scheduler import Rejected

T = TypeVar("T")
log = structlog.get_logger(__name__)


def deadline_token(runtime: Runtime) -> CancelToken:
    """A cancel token whose deadline is the request timeout from now; the drain can
    cancel it too."""
    token = CancelToken(deadline=time.monotonic() + runtime.settings.request_timeout_seconds)
    runtime.in_flight.attach_token(request_id_var.get(), token)
    return token


def admit(runtime: Runtime) -> None:
    """Refuse at once, before spending CPU on decoding, when the container is short of
    memory (new work would risk an OOM kill) or the queue is full."""
    monitor, scheduler = runtime.monitor, runtime.scheduler
    if monitor is not None and monitor.memory_critical:
        memory = monitor.checks["memory"]
        raise ServiceError(
            f"the instance is short of memory ({memory.message}); retry later",
            code="memory_pressure",
            status=503,
            headers={"Retry-After": "5"},
        )
    if scheduler.full:
        raise Rejected("queue_full", scheduler.retry_after())


async def run_inference(
    request: Request,
    runtime: Runtime,
    token: CancelToken,
    work: Callable[[CancelToken], T],
    *,
    task: str,
    audio_seconds: float,
) -> T:
    """Run ``work`` on an inference worker, traced and measured. Raises Rejected when
    it was not run or was stopped (queue, deadline, drain, client gone)."""
    settings = runtime.settings
    engine, model = settings.engine.value, settings.model

    def measured(t: CancelToken) -> T:
        with telemetry.inference(engine, model, task, audio_seconds) as span:
            output = work(t)
            language = getattr(output, "language", None)
            if language:
                span.set_attribute("whisper.language", language)
        return output

    result = await runtime.scheduler.run(measured, token, request.is_disconnected)
    runtime.inference_succeeded()
    return result


async def transcribe(
    request: Request,
    runtime: Runtime,
    engine: Engine,
    options: TranscribeOptions,
    fetch_audio: Callable[[], Awaitable[DecodedAudio]],
) -> Transcription:
    """Check, admit, decode, queue and transcribe; log the outcome."""
    check_options(engine, options)
    token = deadline_token(runtime)
    admit(runtime)
    audio = await fetch_audio()
    result = await run_inference(
        request,
        runtime,
        token,
        lambda t: engine.transcribe(audio.samples, options, t),
        task=options.task,
        audio_seconds=audio.duration,
    )
    log_transcription(runtime.settings, result)
    return result


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
    transcription: Transcription, response_format: ResponseFormat, body: BaseModel
) -> Response:
    """A text format through its writer; the json formats as ``body``."""
    if response_format in TEXT_WRITERS:
        text = TEXT_WRITERS[response_format](transcription)
        return PlainTextResponse(text, media_type=MEDIA_TYPES[response_format])
    return json_response(body)


# The 200 of a route that answers in any response format, for the OpenAPI document.
TEXT_FORMAT_CONTENT: dict[str, Any] = {
    MEDIA_TYPES[f].split(";")[0]: {"schema": {"type": "string"}} for f in TEXT_WRITERS
}
