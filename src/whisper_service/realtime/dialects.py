"""How each WebSocket protocol drives a live session: OpenAI's realtime transcription
events (``/v1/realtime``) and the native ``/stream`` (binary PCM16 with JSON control
messages), each parsed by ``protocol`` and shown back in its own event shapes; and the
checks every frame passes before it is decoded (``Peer``)."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.types import Message

from whisper_service.engines import Engine, TranscribeOptions, UnsupportedOption
from whisper_service.engines.base import check_options
from whisper_service.observability import metrics
from whisper_service.realtime.protocol import (
    Append,
    ProtocolError,
    SessionUpdate,
    Start,
    parse,
    parse_native,
    session_object,
)
from whisper_service.realtime.session import Send, Session, SessionConfig, events


class Peer:
    """A session as its dialect drives it: the session, its id, how to send, and the
    checks every frame passes before it is decoded (size, pace)."""

    def __init__(
        self, session: Session, session_id: str, send: Send, max_frame: int, max_message: int
    ) -> None:
        self.session = session
        self.id = session_id
        self.send = send
        self.max_frame = max_frame
        self.max_message = max_message
        self.elapsed = 0.0  # seconds since the handshake, as of the message in hand

    def check_text(self, text: str) -> None:
        """A JSON message no larger than a maximal frame in base64 and its envelope:
        refused before it is parsed."""
        if len(text) > self.max_message:
            raise ProtocolError(
                "frame_too_large",
                f"an event may carry at most {self.max_frame} bytes of audio; this one was "
                "dropped: send smaller frames",
                "audio",
            )

    async def append(self, audio: bytes) -> None:
        """Take a frame, if it is small enough and not too far ahead of real time."""
        if len(audio) > self.max_frame:
            raise ProtocolError(
                "frame_too_large",
                f"a frame is at most {self.max_frame} bytes; this one ({len(audio)}) was "
                "dropped: send smaller frames",
                "audio",
            )
        limits = self.session.limits
        seconds = len(audio) / 2 / self.session.config.rate
        if self.session.received_seconds + seconds - self.elapsed > limits.max_ahead_seconds:
            raise ProtocolError(
                "audio_too_fast",
                f"audio arrives more than {limits.max_ahead_seconds:g} s ahead of real time; "
                "this frame was dropped: send at most a little faster than real time",
                "audio",
            )
        before = self.session.received_seconds
        await self.session.append(audio)
        metrics.REALTIME_AUDIO_SECONDS.inc(self.session.received_seconds - before)

    def configure(self, config: SessionConfig, engine: Engine, param: str) -> None:
        """Apply ``config`` if the model can honour it (an English-only model, another
        language: an error naming ``param``)."""
        try:
            check_options(engine, TranscribeOptions(language=config.language))
        except UnsupportedOption as exc:
            raise ProtocolError("unsupported_language", exc.message, param) from exc
        self.session.configure(config)


class Dialect(Protocol):
    """How a WebSocket protocol talks to a ``Session``."""

    async def opened(self, peer: Peer) -> None:
        """Right after the handshake."""

    async def handle(self, peer: Peer, message: Message, engine: Engine) -> bool:
        """One client message; True to finish the session and close it."""
        ...

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        """A session event as this protocol shows it (None: not shown)."""
        ...


class OpenAIDialect:
    """OpenAI's realtime transcription protocol: JSON events, base64 audio."""

    async def opened(self, peer: Peer) -> None:
        await peer.send(
            events.session("session.created", session_object(peer.id, peer.session.config))
        )

    async def handle(self, peer: Peer, message: Message, engine: Engine) -> bool:
        if message.get("bytes") is not None:
            raise ProtocolError(
                "binary_not_supported",
                "this endpoint takes JSON text events; send audio as "
                "input_audio_buffer.append (base64), or use /stream for binary PCM",
            )
        text = message.get("text") or ""
        peer.check_text(text)
        event = parse(text)
        session = peer.session
        if isinstance(event, Append):
            await peer.append(event.pcm())
        elif isinstance(event, SessionUpdate):
            config = event.session.applied_to(session.config)
            peer.configure(config, engine, "session.audio.input.transcription.language")
            shown = session_object(peer.id, session.config)
            await peer.send(events.session("session.updated", shown))
        elif event.type == "input_audio_buffer.commit":
            await session.commit()
        else:
            await session.clear()
        return False

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        if event["type"].endswith("transcription.delta") and not event["delta"]:
            return None  # a partial that confirmed no new word: nothing to add
        return event


class NativeDialect:
    """``/stream``: a JSON ``start`` message, then binary PCM16 frames; JSON
    ``commit``, ``clear`` and ``stop``. Answers ``ready``, ``speech_started``,
    ``speech_stopped``, ``partial``, ``final`` (times in seconds on the stream's
    timeline) and ``error`` (``code``, ``message``, and ``param`` where a field is at
    fault)."""

    def __init__(self) -> None:
        self.started = False

    async def opened(self, peer: Peer) -> None:
        return None  # the client speaks first: its start message

    async def handle(self, peer: Peer, message: Message, engine: Engine) -> bool:
        frame = message.get("bytes")
        if frame is not None:
            if not self.started:
                raise ProtocolError("not_started", "send the start message before audio")
            await peer.append(frame)
            return False
        text = message.get("text") or ""
        peer.check_text(text)
        event = parse_native(text)
        session = peer.session
        if isinstance(event, Start):
            if self.started:
                raise ProtocolError("already_started", "the stream has started already")
            peer.configure(event.config(), engine, "language")
            self.started = True
            await peer.send({"type": "ready", "session_id": peer.id,
                             "sample_rate": session.config.rate})  # fmt: skip
        elif not self.started:
            raise ProtocolError("not_started", "send the start message first")
        elif event.type == "commit":
            await session.commit()
        elif event.type == "clear":
            await session.clear()
        return event.type == "stop"

    def translate(self, session: Session | None, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind == "ready":  # this protocol's own
            return event
        times: tuple[float | None, float | None] = (None, None)
        if session is not None:
            times = session.turn_times.get(event.get("item_id", ""), times)
        if kind == "error":
            return _native_error(event["error"])
        if kind == "input_audio_buffer.speech_started":
            return {"type": "speech_started", "start": event["audio_start_ms"] / 1000}
        if kind == "input_audio_buffer.speech_stopped":
            return {"type": "speech_stopped", "end": event["audio_end_ms"] / 1000}
        if kind.endswith("transcription.delta"):
            # The whole partial, as this protocol shows it; the last delta of a closed
            # turn (its final's words not yet sent) has none: the final follows.
            whole = session.partial_text(event["item_id"]) if session is not None else None
            if whole is None:
                return None
            return {"type": "partial", "text": whole, "start": times[0]}
        if kind.endswith("transcription.completed"):
            return {"type": "final", "text": event["transcript"], "start": times[0],
                    "end": times[1]}  # fmt: skip
        if kind.endswith("transcription.failed"):
            return _native_error(event["error"])
        return None  # session and buffer bookkeeping: OpenAI's, not shown here


def _native_error(error: dict[str, Any]) -> dict[str, Any]:
    shown = {"type": "error", "code": error["code"], "message": error["message"]}
    if error.get("param"):
        shown["param"] = error["param"]
    return shown
