"""Transcripts as server-sent events, while they are decoded.

The request is admitted and its audio decoded before the response starts, so every
refusal that can come before (bad options, a full queue, undecodable audio, memory)
is an ordinary HTTP error with its status. Then the engine runs on an inference worker
and hands over each segment as it is decoded; each becomes an event at once. A failure
after the stream has started (the deadline, a drain) arrives as an ``error`` event:
the status is already 200. A client that leaves cancels the inference, and the
request's place and memory are given back once the worker has really stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from whisper_service.api.error_responses import error_body
from whisper_service.api.request_audio import AudioSource
from whisper_service.api.transcription import (
    Admitted,
    admitted_audio,
    log_transcription,
    run_admitted,
    transcription_work,
)
from whisper_service.diarization.speakers import DiarizeOptions
from whisper_service.diarization.transcripts import check_channels
from whisper_service.engines import Engine, Segment, TranscribeOptions, Transcription
from whisper_service.engines.base import check_options
from whisper_service.errors import ServiceError
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.runtime import Runtime

log = structlog.get_logger(__name__)
# Seconds between keep-alive comments while a long window decodes.
PING_SECONDS = 10
# Background tasks that give a finished stream's place and memory back.
_releasing: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class EventFormat:
    """What a stream's events look like (OpenAI's, or the service's own): the event
    for a decoded segment (None: nothing to send for it), the events sent once the
    whole transcript is there (a diarized transcript's segments: speakers are known
    only then), and the last one (awaited: it may store the transcript first)."""

    segment: Callable[[Segment], dict[str, Any] | None]
    done: Callable[[Transcription], Awaitable[dict[str, Any]]]
    finished: Callable[[Transcription], list[dict[str, Any]]] = lambda _: []


def error_event(error: ServiceError) -> dict[str, Any]:
    """An error after the stream started, in the API's error shape (the openai SDK
    raises an APIError for an event carrying ``error``)."""
    return {"type": "error", **error_body(error.status, error.code, error.message, error.param)}


async def stream_transcription(
    request: Request,
    runtime: Runtime,
    engine: Engine,
    options: TranscribeOptions,
    source: AudioSource,
    events: EventFormat,
    diarization: DiarizeOptions | None = None,
) -> EventSourceResponse:
    """Check, admit and decode now; then stream the transcription's events."""
    check_options(engine, options)
    stack = AsyncExitStack()
    stereo = diarization is not None and diarization.mode == "channel"
    try:
        admitted = await stack.enter_async_context(
            admitted_audio(request, runtime, source, stereo=stereo)
        )
        if diarization is not None:
            await asyncio.to_thread(check_channels, admitted.audio, diarization)
    except BaseException:
        await stack.aclose()
        raise
    return EventSourceResponse(
        _events(runtime, admitted, engine, options, diarization, events, stack),
        ping=PING_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    runtime: Runtime,
    admitted: Admitted,
    engine: Engine,
    options: TranscribeOptions,
    diarization: DiarizeOptions | None,
    events: EventFormat,
    stack: AsyncExitStack,
) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    decoded: asyncio.Queue[Segment | None] = asyncio.Queue()

    def on_segment(segment: Segment) -> None:  # on the inference thread
        loop.call_soon_threadsafe(decoded.put_nowait, segment)

    inference = asyncio.ensure_future(
        run_admitted(
            runtime,
            admitted,
            transcription_work(
                engine, runtime.settings, options, admitted.audio, diarization, on_segment
            ),
            task=options.task,
            seconds=admitted.audio.duration,
            # The SSE response watches the connection itself and closes this stream.
            is_disconnected=None,
        )
    )
    # Segments are queued before the inference completes: None comes last.
    inference.add_done_callback(lambda _: decoded.put_nowait(None))
    try:
        while (segment := await decoded.get()) is not None:
            payload = events.segment(segment)
            if payload is not None:
                yield _event(payload)
        try:
            result = inference.result()
            log_transcription(runtime.settings, result)
            finished = events.finished(result)
            done = await events.done(result)
        except ServiceError as error:
            telemetry.rejected(error.code)
            log.warning("stream_failed", code=error.code, reason=error.message)
            yield _event(error_event(error))
            return
        except Exception:
            log.exception("stream_failed")
            yield _event(error_event(ServiceError("internal server error; see the logs")))
            return
        for payload in finished:
            yield _event(payload)
        yield _event(done)
    finally:
        abandoned = not inference.done()  # the client left, or the server is stopping
        if abandoned:
            admitted.token.cancel("client_disconnected")
        release = loop.create_task(_release_after(inference, stack, abandoned=abandoned))
        _releasing.add(release)
        release.add_done_callback(_releasing.discard)


def _event(payload: dict[str, Any]) -> ServerSentEvent:
    # Data lines only, as OpenAI sends them: the event's ``type`` is in its JSON (first,
    # for a human reading the stream), and a browser's EventSource hands unnamed events
    # to ``onmessage``.
    ordered = {"type": payload["type"], **payload}
    return ServerSentEvent(json.dumps(ordered, ensure_ascii=False))


async def _release_after(
    inference: asyncio.Future[Any], stack: AsyncExitStack, *, abandoned: bool
) -> None:
    """Give the place and the memory back once the worker has stopped using them."""
    try:
        await asyncio.wait({inference})
        if abandoned:
            error = None if inference.cancelled() else inference.exception()
            log.info("stream_abandoned", inference_stopped_by=str(error or "finished"))
    finally:
        await stack.aclose()
