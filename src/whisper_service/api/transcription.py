"""The one transcription pipeline every route calls.

A request is parsed by its route (``openai/``, ``native/``), then here:

1. checked: options the model cannot honour are 400 before any work;
2. admitted: refused at once (503 memory, 429 queue full) before a byte is decoded;
   the request holds its place in the queue and the memory of its decoded audio;
3. decoded: the upload or gs:// object, off the event loop, with limits (``sources``),
   under the request's deadline, stopped if the client leaves;
4. queued and transcribed: the scheduler runs the engine on an inference thread,
   under the same deadline, dropping it if the client has left; with diarization,
   the speakers are found and put on the transcript in the same place
   (``diarization.transcripts``);
5. answered: ``render`` writes the response format.

Every failure on the way is a ServiceError that ``api/error_responses.py`` renders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import structlog
from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from whisper_service.api.request_audio import AudioSource, decode_source
from whisper_service.api.schemas import json_response
from whisper_service.audio import DecodedAudio
from whisper_service.capacity.goodput import Claim
from whisper_service.capacity.scheduler import DISCONNECT_POLL_SECONDS, Admission
from whisper_service.config import Settings
from whisper_service.diarization.speakers import DiarizeOptions
from whisper_service.diarization.transcripts import (
    check_channels,
    transcribe_channels,
    with_speakers,
)
from whisper_service.engines import CancelToken, Engine, TranscribeOptions, Transcription
from whisper_service.engines.base import SegmentCallback, check_options
from whisper_service.errors import ServiceError
from whisper_service.formats import MEDIA_TYPES, TEXT_WRITERS, ResponseFormat
from whisper_service.long_audio import transcribe_audio
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.runtime import Runtime

T = TypeVar("T")
log = structlog.get_logger(__name__)


def deadline_token(runtime: Runtime) -> CancelToken:
    """A cancel token whose deadline is the request timeout from now; the drain can
    cancel it too."""
    token = CancelToken(deadline=time.monotonic() + runtime.settings.request_timeout_seconds)
    runtime.in_flight.attach_token(request_id_var.get(), token)
    return token


def refuse_under_memory_pressure(runtime: Runtime) -> None:
    """503 at once when the container is short of memory: new work would risk an OOM
    kill (the health monitor's memory check)."""
    monitor = runtime.monitor
    if monitor is not None and monitor.memory_critical:
        memory = monitor.checks["memory"]
        raise ServiceError(
            f"the instance is short of memory ({memory.message}); retry later",
            code="memory_pressure",
            status=503,
            headers={"Retry-After": "5"},
        )


async def while_connected(request: Request, token: CancelToken, work: Awaitable[T]) -> T:
    """Await ``work`` (which checks ``token``); cancel the token if the client leaves."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            token.cancel("client_disconnected")


@dataclass
class Admitted:
    """A request's decoded audio, with its deadline token and its place in the queue;
    its memory reservation lasts as long as the ``admitted_audio`` block."""

    audio: DecodedAudio
    token: CancelToken
    admission: Admission
    claim: Claim


@asynccontextmanager
async def admitted_audio(
    request: Request,
    runtime: Runtime,
    source: AudioSource,
    *,
    stereo: bool = False,
    max_seconds: float | None = None,
) -> AsyncIterator[Admitted]:
    """Admit the request and decode its audio. Refusals are ServiceErrors: memory
    (503), a full queue (429), a deadline it could not meet at this load (503,
    ``capacity/goodput.py``), the deadline (504), a client gone.

    The request takes its place in the queue, reserves the memory of its decoded
    audio and states its length in the backlog before a byte is decoded (from the
    header), and again once decoded; all are given back when the block ends.
    Decoding, like inference, stops at the deadline or when the client leaves.
    Inference that reads at most ``max_seconds`` of the audio states no more.
    """
    token = deadline_token(runtime)
    channels = 2 if stereo else 1

    def expect(seconds: float) -> None:
        claim.expect(min(seconds, max_seconds or seconds) * channels)

    refuse_under_memory_pressure(runtime)
    with (
        runtime.scheduler.admit() as admission,
        runtime.audio_memory.reservation() as memory,
        runtime.goodput.claim(token.deadline) as claim,
    ):
        audio = await while_connected(
            request,
            token,
            decode_source(
                source,
                runtime.settings,
                runtime.storage,
                check=token.check,
                reserve=memory.ensure,
                expect=expect,
                stereo=stereo,
            ),
        )
        expect(audio.duration)
        yield Admitted(audio, token, admission, claim)


async def run_admitted(
    runtime: Runtime,
    admitted: Admitted,
    work: Callable[[np.ndarray, CancelToken], T],
    *,
    task: str,
    seconds: float,
    is_disconnected: Callable[[], Awaitable[bool]] | None,
) -> T:
    """Run ``work(samples, token)`` on an inference worker in the admitted place,
    traced and measured. Raises Rejected when it was not run or was stopped (queue
    timeout, deadline, drain, client gone)."""
    settings = runtime.settings
    engine_name, model = settings.engine.value, settings.model
    samples = admitted.audio.samples

    def measured(t: CancelToken) -> T:
        with telemetry.inference(engine_name, model, task, seconds) as span:
            output = work(samples, t)
            language = getattr(output, "language", None)
            if language:
                span.set_attribute("whisper.language", language)
        return output

    result = await runtime.scheduler.run(
        measured, admitted.token, is_disconnected, admission=admitted.admission
    )
    runtime.inference_succeeded()
    runtime.goodput.finished(admitted.claim.seconds)
    return result


async def infer(
    request: Request,
    runtime: Runtime,
    source: AudioSource,
    work: Callable[[np.ndarray, CancelToken], T],
    *,
    task: str,
    max_seconds: float | None = None,
) -> tuple[T, float]:
    """Admit, decode and run ``work(samples, token)``; (its result, the audio's
    duration)."""
    async with admitted_audio(request, runtime, source, max_seconds=max_seconds) as admitted:
        duration = admitted.audio.duration
        seconds = duration if max_seconds is None else min(duration, max_seconds)
        result = await run_admitted(
            runtime,
            admitted,
            work,
            task=task,
            seconds=seconds,
            is_disconnected=request.is_disconnected,
        )
    return result, duration


def transcription_work(
    engine: Engine,
    settings: Settings,
    options: TranscribeOptions,
    audio: DecodedAudio,
    diarization: DiarizeOptions | None,
    on_segment: SegmentCallback | None = None,
) -> Callable[[np.ndarray, CancelToken], Transcription]:
    """What runs on the inference worker: the engine (long audio in regions at once,
    ``long_audio``), then the speakers when asked for (the engine then aligns words,
    which find where speakers change)."""
    long_from = settings.long_audio_from
    if diarization is None:
        return lambda samples, t: transcribe_audio(
            engine, samples, options, t, on_segment, long_from=long_from
        )
    if diarization.mode == "channel":
        return lambda _samples, t: transcribe_channels(engine, options, audio, t, long_from)
    aligned = replace(options, word_timestamps=True)

    def work(samples: np.ndarray, token: CancelToken) -> Transcription:
        result = transcribe_audio(engine, samples, aligned, token, on_segment, long_from=long_from)
        return with_speakers(result, audio, diarization, token, keep_words=options.word_timestamps)

    return work


async def transcribe(
    request: Request,
    runtime: Runtime,
    engine: Engine,
    options: TranscribeOptions,
    source: AudioSource,
    diarization: DiarizeOptions | None = None,
) -> Transcription:
    """Check the options against the model, then admit, decode, queue and transcribe
    (and diarize); log the outcome."""
    check_options(engine, options)
    stereo = diarization is not None and diarization.mode == "channel"
    async with admitted_audio(request, runtime, source, stereo=stereo) as admitted:
        if diarization is not None:
            await asyncio.to_thread(check_channels, admitted.audio, diarization)
        result = await run_admitted(
            runtime,
            admitted,
            transcription_work(engine, runtime.settings, options, admitted.audio, diarization),
            task=options.task,
            seconds=admitted.audio.duration,
            is_disconnected=request.is_disconnected,
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
