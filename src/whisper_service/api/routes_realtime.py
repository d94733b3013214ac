"""Live transcription over WebSocket: ``/v1/realtime?intent=transcription``, OpenAI's
realtime transcription protocol (JSON events, base64 audio).

The handshake is refused with an HTTP answer before the upgrade when the service
cannot take the session: 429 past ``WHISPER_REALTIME_MAX_SESSIONS`` open sessions in
this process, 503 while the model loads or the process drains, 400 for another
intent; API keys are checked by the auth middleware as for HTTP (header, or OpenAI's
``openai-insecure-api-key.<key>`` subprotocol). Inside a session every bad input is
an ``error`` event and the session goes on; a client that leaves frees its session at
once; an idle session is closed after ``WHISPER_REALTIME_IDLE_TIMEOUT_SECONDS``, any
session after ``WHISPER_REALTIME_MAX_SESSION_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

import structlog
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect

from whisper_service.api.errors import error_body
from whisper_service.engines import CancelToken
from whisper_service.errors import ServiceError
from whisper_service.observability import metrics
from whisper_service.realtime.protocol import (
    ProtocolError,
    appended_audio,
    native_config,
    parse,
    parse_native,
    session_object,
    updated_config,
)
from whisper_service.realtime.session import (
    Send,
    Session,
    SessionConfig,
    SessionLimits,
    events,
    new_id,
)
from whisper_service.realtime.transcriber import ScheduledTranscriber
from whisper_service.serving.runtime import Runtime

router = APIRouter(tags=["realtime"])
log = structlog.get_logger(__name__)
# Close codes: normal end, the server going away (drain), policy (limits).
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY = 1000, 1001, 1008
# How often a session looks at the drain, its idle time and its length.
POLL_SECONDS = 0.25


async def refuse(websocket: WebSocket, error: ServiceError) -> None:
    """Refuse the handshake with an HTTP answer in the API's error shape."""
    body = error_body(error.status, error.code, error.message, error.param)
    await websocket.send_denial_response(
        JSONResponse(body, status_code=error.status, headers=error.headers)
    )


def _refusal(runtime: Runtime, websocket: WebSocket) -> ServiceError | None:
    settings = runtime.settings
    intent = websocket.query_params.get("intent", "transcription")
    if intent != "transcription":
        return ServiceError(
            f"this service runs transcription sessions only (intent=transcription), not {intent!r}",
            code="unsupported_intent",
            status=400,
            param="intent",
        )
    if runtime.draining or runtime.engine is None:
        reason = "the instance is shutting down" if runtime.draining else "the model is loading"
        return ServiceError(
            f"{reason}; connect again", code="unavailable", status=503,
            headers={"Retry-After": "5"},
        )  # fmt: skip
    if runtime.realtime_sessions >= settings.realtime_max_sessions:
        return ServiceError(
            f"this instance holds {settings.realtime_max_sessions} live sessions, its "
            "limit; connect again (another instance may take it)",
            code="too_many_sessions",
            status=429,
            headers={"Retry-After": "5"},
        )
    return None


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """A live transcription session (OpenAI's realtime transcription protocol)."""
    await _live(websocket, OpenAIDialect())


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """A live transcription session (the native protocol: binary PCM16 frames)."""
    await _live(websocket, NativeDialect())


async def _live(websocket: WebSocket, dialect: Dialect) -> None:
    runtime: Runtime = websocket.app.state.runtime
    refusal = _refusal(runtime, websocket)
    if refusal is not None:
        metrics.REALTIME_REFUSED.labels(refusal.code).inc()
        log.info("realtime_session_refused", code=refusal.code, path=websocket.url.path)
        await refuse(websocket, refusal)
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    session_id = new_id("sess")
    # In flight like a request: the drain waits for it, and cancels it at its timeout.
    runtime.in_flight.add(session_id, "WEBSOCKET", websocket.url.path)
    token = CancelToken()
    runtime.in_flight.attach_token(session_id, token)
    runtime.realtime_sessions += 1
    metrics.REALTIME_SESSIONS.inc()
    trace.get_current_span().set_attribute("whisper.realtime.session_id", session_id)
    log.info("realtime_session_opened", session_id=session_id, path=websocket.url.path)
    try:
        await _serve(websocket, runtime, session_id, token, dialect)
    finally:
        runtime.realtime_sessions -= 1
        metrics.REALTIME_SESSIONS.dec()
        runtime.in_flight.remove(session_id)
        log.info("realtime_session_closed", session_id=session_id)


async def _serve(
    websocket: WebSocket,
    runtime: Runtime,
    session_id: str,
    token: CancelToken,
    dialect: Dialect,
) -> None:
    settings = runtime.settings
    lock = asyncio.Lock()
    session: Session | None = None

    async def send(event: dict[str, Any]) -> None:
        shown = dialect.translate(session, event) if session is not None else event
        if shown is not None:
            async with lock:
                await websocket.send_text(json.dumps(shown, ensure_ascii=False))

    def observe(kind: str, seconds: float) -> None:
        metrics.REALTIME_LATENCY.labels(kind).observe(seconds)

    assert runtime.engine is not None  # checked before the handshake
    config = SessionConfig()
    session = Session(
        config,
        ScheduledTranscriber(runtime, runtime.engine),
        send,
        SessionLimits(
            settings.realtime_max_turn_seconds,
            settings.realtime_partial_seconds,
            settings.realtime_max_ahead_seconds,
        ),
        observe,
    )
    await dialect.opened(session, session_id, send)
    started = time.monotonic()
    last = started
    receiving: asyncio.Future[Message] | None = None
    code = CLOSE_NORMAL
    try:
        while True:
            if receiving is None:
                receiving = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({receiving}, timeout=POLL_SECONDS)
            now = time.monotonic()
            if token.cancelled:  # the drain's timeout: no time left for a final
                await session.error("shutting_down", "the instance is shutting down")
                code = CLOSE_GOING_AWAY
                break
            if runtime.draining:  # the open turn's final, then close
                await session.finish()
                code = CLOSE_GOING_AWAY
                break
            if not done:
                expired = now - started > settings.realtime_max_session_seconds
                if expired or now - last > settings.realtime_idle_timeout_seconds:
                    await session.error(
                        "session_expired" if expired else "session_idle",
                        "the session's time is up" if expired else "no event for too long",
                    )
                    await session.finish()
                    code = CLOSE_POLICY
                    break
                continue
            message, receiving, last = receiving.result(), None, now
            if message["type"] == "websocket.disconnect":
                return  # the client left: its queued turns go with it (finally)
            ahead = session.received_seconds - (now - started)
            try:
                stop = await dialect.handle(session, session_id, message, send, ahead)
            except ProtocolError as exc:
                await session.error(exc.code, exc.message, exc.param)
                continue
            if stop:
                await session.finish()
                break
    except WebSocketDisconnect:
        return
    finally:
        if receiving is not None:
            receiving.cancel()
        session.abandon()  # after finish() nothing is left; a vanished client's turns go
    await websocket.close(code)


def _check_pace(session: Session, ahead_seconds: float) -> None:
    limit = session.limits.max_ahead_seconds
    if ahead_seconds > limit:
        raise ProtocolError(
            "audio_too_fast",
            f"audio arrives more than {limit:g} s ahead of real time; this frame was "
            "dropped: send at most a little faster than real time",
            "audio",
        )


async def _append(session: Session, audio: bytes, ahead_seconds: float) -> None:
    _check_pace(session, ahead_seconds)
    before = session.received_seconds
    await session.append(audio)
    metrics.REALTIME_AUDIO_SECONDS.inc(session.received_seconds - before)


class Dialect(Protocol):
    """How a WebSocket protocol talks to a ``Session``."""

    async def opened(self, session: Session, session_id: str, send: Send) -> None:
        """Right after the handshake."""

    async def handle(
        self, session: Session, session_id: str, message: Message, send: Send, ahead: float
    ) -> bool:
        """One client message; True to finish the session and close it."""
        ...

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        """A session event as this protocol shows it (None: not shown)."""
        ...


class OpenAIDialect:
    """OpenAI's realtime transcription protocol: JSON events, base64 audio."""

    async def opened(self, session: Session, session_id: str, send: Send) -> None:
        await send(events.session("session.created", session_object(session_id, session.config)))

    async def handle(
        self, session: Session, session_id: str, message: Message, send: Send, ahead: float
    ) -> bool:
        if message.get("bytes") is not None:
            raise ProtocolError(
                "binary_not_supported",
                "this endpoint takes JSON text events; send audio as "
                "input_audio_buffer.append (base64), or use /stream for binary PCM",
            )
        event = parse(message.get("text") or "")
        kind = event["type"]
        if kind == "input_audio_buffer.append":
            await _append(session, appended_audio(event), ahead)
        elif kind == "input_audio_buffer.commit":
            await session.commit()
        elif kind == "input_audio_buffer.clear":
            await session.clear()
        else:  # session.update, transcription_session.update
            session.configure(updated_config(session.config, event))
            shown = session_object(session_id, session.config)
            await send(events.session("session.updated", shown))
        return False

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        return event


class NativeDialect:
    """``/stream``: a JSON ``start`` message, then binary PCM16 frames; JSON
    ``commit``, ``clear`` and ``stop``. Answers ``ready``, ``speech_started``,
    ``speech_stopped``, ``partial``, ``final`` (times in seconds on the stream's
    timeline) and ``error``."""

    def __init__(self) -> None:
        self.started = False

    async def opened(self, session: Session, session_id: str, send: Send) -> None:
        return None  # the client speaks first: its start message

    async def handle(
        self, session: Session, session_id: str, message: Message, send: Send, ahead: float
    ) -> bool:
        frame = message.get("bytes")
        if frame is not None:
            if not self.started:
                raise ProtocolError("not_started", "send the start message before audio")
            await _append(session, frame, ahead)
            return False
        event = parse_native(message.get("text") or "")
        kind: str = event["type"]
        if kind == "start":
            if self.started:
                raise ProtocolError("already_started", "the stream has started already")
            session.configure(native_config(event))
            self.started = True
            await send({"type": "ready", "session_id": session_id,
                        "sample_rate": session.config.rate})  # fmt: skip
        elif not self.started:
            raise ProtocolError("not_started", "send the start message first")
        elif kind == "commit":
            await session.commit()
        elif kind == "clear":
            await session.clear()
        return kind == "stop"

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind == "ready":  # this protocol's own
            return event
        times: tuple[float | None, float | None] = (None, None)
        if session is not None:
            times = session.turn_times.get(event.get("item_id", ""), times)
        if kind == "error":
            error = event["error"]
            return {"type": "error", "code": error["code"], "message": error["message"]}
        if kind == "input_audio_buffer.speech_started":
            return {"type": "speech_started", "start": event["audio_start_ms"] / 1000}
        if kind == "input_audio_buffer.speech_stopped":
            return {"type": "speech_stopped", "end": event["audio_end_ms"] / 1000}
        if kind.endswith("transcription.delta"):
            return {"type": "partial", "text": event["delta"], "start": times[0]}
        if kind.endswith("transcription.completed"):
            return {"type": "final", "text": event["transcript"], "start": times[0],
                    "end": times[1]}  # fmt: skip
        if kind.endswith("transcription.failed"):
            error = event["error"]
            return {"type": "error", "code": error["code"], "message": error["message"]}
        return None  # session and buffer bookkeeping: OpenAI's, not shown here
