"""The WebSocket routes of live transcription: ``/v1/realtime?intent=transcription``
(OpenAI's realtime transcription protocol: JSON events, base64 audio) and ``/stream``
(the native one: binary PCM16 frames), each driven by its dialect
(``realtime/dialects.py``) through one session loop.

The handshake is refused with an HTTP answer before the upgrade when the service
cannot take the session: 429 past ``WHISPER_REALTIME_MAX_SESSIONS`` open sessions in
this process or ``WHISPER_REALTIME_MAX_SESSIONS_PER_CLIENT`` of one client, 503 while
the model loads or the process drains, 400 for another intent; API keys, the rate
limit and the page's origin are checked by the middleware as for HTTP (keys by
header, or OpenAI's ``openai-insecure-api-key.<key>`` subprotocol). Inside a session
every bad input is an ``error`` event and the session goes on: a frame larger than
``WHISPER_REALTIME_MAX_FRAME_BYTES`` is refused before it is decoded, and a frame that
would put the audio more than ``WHISPER_REALTIME_MAX_AHEAD_SECONDS`` ahead of real
time is dropped. The session's audio counts in the process's audio budget. A client
that leaves frees its session at once; an idle session is closed after
``WHISPER_REALTIME_IDLE_TIMEOUT_SECONDS``, any session after
``WHISPER_REALTIME_MAX_SESSION_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket
from opentelemetry import trace
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect

from whisper_service.api.deps import RuntimeDep
from whisper_service.api.error_responses import send_error_response
from whisper_service.api.middleware.rate_limit import client_address
from whisper_service.capacity.memory import Reservation
from whisper_service.engines import CancelToken
from whisper_service.errors import ServiceError
from whisper_service.observability import metrics
from whisper_service.realtime.dialects import Dialect, NativeDialect, OpenAIDialect, Peer
from whisper_service.realtime.protocol import ProtocolError
from whisper_service.realtime.session import Hold, Session, SessionConfig, SessionLimits, new_id
from whisper_service.realtime.transcriber import ScheduledTranscriber
from whisper_service.serving.runtime import Runtime

router = APIRouter(tags=["realtime"])
log = structlog.get_logger(__name__)
# Close codes: normal end, the server going away (drain), policy (limits).
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY = 1000, 1001, 1008
# How often a session looks at the drain, its idle time and its length.
POLL_SECONDS = 0.25


async def refuse(websocket: WebSocket, error: ServiceError) -> None:
    """Refuse the handshake as the middleware does: an HTTP answer in the API's error
    shape, or a policy close where the server cannot send one (counted in
    ``whisper_realtime_sessions_refused_total`` by the caller)."""
    await send_error_response(websocket.send, error, websocket.scope)


def client_of(websocket: WebSocket) -> str:
    """Who opens the session: its API key's id, or its address where keys are off."""
    client = websocket.scope.get("state", {}).get("client_id")
    return str(client) if client else client_address(websocket.scope)


def _refusal(runtime: Runtime, websocket: WebSocket, client: str) -> ServiceError | None:
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
    if runtime.realtime_clients.get(client, 0) >= settings.realtime_max_sessions_per_client:
        return ServiceError(
            f"this client holds {settings.realtime_max_sessions_per_client} live sessions "
            "on this instance, its limit; close one first",
            code="too_many_sessions_for_client",
            status=429,
            headers={"Retry-After": "5"},
        )
    return None


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, runtime: RuntimeDep) -> None:
    """A live transcription session (OpenAI's realtime transcription protocol)."""
    await _live(websocket, runtime, OpenAIDialect())


@router.websocket("/stream")
async def stream(websocket: WebSocket, runtime: RuntimeDep) -> None:
    """A live transcription session (the native protocol: binary PCM16 frames)."""
    await _live(websocket, runtime, NativeDialect())


async def _live(websocket: WebSocket, runtime: Runtime, dialect: Dialect) -> None:
    client = client_of(websocket)
    refusal = _refusal(runtime, websocket, client)
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
    runtime.realtime_clients[client] = runtime.realtime_clients.get(client, 0) + 1
    metrics.REALTIME_SESSIONS.inc()
    trace.get_current_span().set_attribute("whisper.realtime.session_id", session_id)
    log.info("realtime_session_opened", session_id=session_id, path=websocket.url.path)
    try:
        with runtime.audio_memory.reservation() as reservation:
            await _serve(websocket, runtime, session_id, token, dialect, reservation)
    finally:
        runtime.realtime_sessions -= 1
        left = runtime.realtime_clients.pop(client, 1) - 1
        if left:
            runtime.realtime_clients[client] = left
        metrics.REALTIME_SESSIONS.dec()
        runtime.in_flight.remove(session_id)
        log.info("realtime_session_closed", session_id=session_id)


def _holder(reservation: Reservation) -> Hold:
    """The session's audio, held in the process's audio budget (False: no room)."""

    def hold(nbytes: int) -> bool:
        try:
            reservation.resize(nbytes)
        except ServiceError:  # memory_pressure, or more than the budget could ever hold
            return False
        return True

    return hold


async def _serve(
    websocket: WebSocket,
    runtime: Runtime,
    session_id: str,
    token: CancelToken,
    dialect: Dialect,
    reservation: Reservation,
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

    engine = runtime.engine
    assert engine is not None  # checked before the handshake
    session = Session(
        SessionConfig(),
        ScheduledTranscriber(runtime, engine),
        send,
        SessionLimits(
            settings.realtime_max_turn_seconds,
            settings.realtime_partial_seconds,
            settings.realtime_first_partial_seconds,
            settings.realtime_max_ahead_seconds,
            settings.realtime_max_pending_turns,
        ),
        observe,
        _holder(reservation),
    )
    peer = Peer(
        session,
        session_id,
        send,
        settings.realtime_max_frame_bytes,
        settings.realtime_max_message_bytes,
    )
    await dialect.opened(peer)
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
            peer.elapsed = now - started
            try:
                stop = await dialect.handle(peer, message, engine)
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
