"""One live transcription session, apart from its transport: client audio in, turns
found (server VAD, or the client's commits), each turn transcribed, events out.

The transport (a WebSocket route) hands frames and commands to a ``Session`` and
sends what ``send`` receives. Events are OpenAI's realtime transcription events as
dicts (``events``); the native stream maps them to its own.

Partial text: while a turn is open, its audio so far is re-decoded every
``partial_seconds`` (a ``delta`` event with the new text); the turn's final text
comes when it closes (``completed``). Transcription goes through ``Transcriber``
(the scheduler, in the service), one request at a time per session, in order.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog

from whisper_service.audio import SAMPLE_RATE
from whisper_service.realtime.audio import FrameError, PcmStream
from whisper_service.realtime.vad import StreamingVad, TurnDetection

log = structlog.get_logger(__name__)

Event = dict[str, Any]
Send = Callable[[Event], Awaitable[None]]
# Told each latency: ("final", end of turn -> completed), ("partial", speech -> first delta).
Observe = Callable[[str, float], None]


class TranscriptionFailed(Exception):
    """A turn could not be transcribed (queue full, deadline, drain): ``code`` and
    ``message`` for the client's ``...transcription.failed`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Context:
    """What came before a turn: the previous turn's audio (16 kHz) and final text, and
    the final text of the turns before it."""

    earlier: str = ""
    text: str = ""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def then(self, audio: np.ndarray, text: str) -> Context:
        """The context of the turn after one of ``audio`` with final ``text``."""
        earlier = " ".join(t for t in (self.earlier, self.text) if t)
        return Context(earlier[-MAX_EARLIER_CHARS:], text, audio)


# The prompt takes its last 224 tokens at most; this is well above.
MAX_EARLIER_CHARS = 1000


class Transcriber(Protocol):
    """Turns audio into text (the service's scheduler and engine)."""

    async def __call__(
        self, audio: np.ndarray, config: SessionConfig, *, final: bool, context: Context
    ) -> str | None:
        """The text of 16 kHz ``audio``; ``final`` for a closed turn; ``context``: the
        turns before, which Whisper decodes on from, as from one window to the next.
        None: a partial not decoded now, for want of a free worker (finals always
        are)."""
        ...


@dataclass(frozen=True)
class SessionConfig:
    """What the client set: input rate, language, prompt, turn detection (None: the
    client commits)."""

    rate: int = 24_000
    language: str | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)


@dataclass(frozen=True)
class SessionLimits:
    """Per-session bounds: the audio a turn may hold before it is cut, how often
    partial text is refreshed, how far ahead of real time a client may send."""

    max_turn_seconds: float = 30.0
    partial_seconds: float = 1.0
    max_ahead_seconds: float = 120.0


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (``item_...``, ``event_...``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


class Session:
    """Frames and commands in (``append``, ``commit``, ``clear``, ``finish``), events
    out through ``send``."""

    def __init__(
        self,
        config: SessionConfig,
        transcriber: Transcriber,
        send: Send,
        limits: SessionLimits | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.limits = limits or SessionLimits()
        self._transcriber = transcriber
        self._send = send
        self._observe = observe or (lambda _kind, _seconds: None)
        self._started_at: dict[str, float] = {}  # open turns: when speech started
        self.configure(config)
        self._buffer: list[np.ndarray] = []  # the open turn's audio (16 kHz)
        self._buffer_start = 0  # its first sample, on the session's timeline
        self._received = 0  # samples received in all
        self._item: str | None = None  # the open turn's item id (once speech started)
        self._previous: str | None = None
        self._work: asyncio.Task[None] | None = None  # transcriptions, in order
        self._since_partial = 0
        self._partial_pending = False  # one partial waits or runs at a time
        self._context = Context()  # the last turns' finals
        self.turn_times: dict[str, tuple[float, float | None]] = {}  # item: start, end (s)

    @property
    def received_seconds(self) -> float:
        """Audio received so far, in seconds."""
        return self._received / SAMPLE_RATE

    def configure(self, config: SessionConfig) -> None:
        """Apply a session update (the rate and turn detection reset the stream)."""
        self.config = config
        self._stream = PcmStream(config.rate)
        self._vad = StreamingVad(config.turn_detection) if config.turn_detection else None

    async def error(self, code: str, message: str, param: str | None = None) -> None:
        """An ``error`` event: the session goes on."""
        await self._send(events.error(code, message, param))

    async def append(self, frame: bytes) -> None:
        """Take a frame of PCM16 at the session's rate."""
        try:
            samples = self._stream.push(frame)
        except FrameError as exc:
            await self.error(exc.code, exc.message, "audio")
            return
        await self._take(samples)

    async def _take(self, samples: np.ndarray) -> None:
        self._buffer.append(samples)
        self._received += len(samples)
        self._since_partial += len(samples)
        if self._vad is not None:
            for event in self._vad.feed(samples):
                if event.kind == "started":
                    await self._speech_started(event.sample)
                else:
                    await self._speech_stopped(event.sample)
        buffered = self._received - self._buffer_start
        if self._item is not None and buffered >= self.limits.max_turn_seconds * SAMPLE_RATE:
            await self.commit()  # a turn that never pauses is cut, as Whisper's window is
        elif (
            self._item is not None
            and not self._partial_pending
            and self._since_partial >= self.limits.partial_seconds * SAMPLE_RATE
        ):
            self._since_partial = 0
            self._partial_pending = True
            self._enqueue(self._partial(self._item))

    async def _speech_started(self, sample: int) -> None:
        # Audio before the prefix padding is not part of the turn; nor is the last
        # turn's, where the padding reaches back into it.
        self._drop_before(sample)
        start = self._buffer_start
        self._item = new_id("item")
        self._since_partial = 0
        self._started_at[self._item] = time.monotonic()
        self.turn_times[self._item] = (start / SAMPLE_RATE, None)
        await self._send(events.speech_started(self._item, self._ms(start)))

    async def _speech_stopped(self, sample: int) -> None:
        if self._item is None:
            return
        await self._send(events.speech_stopped(self._item, self._ms(sample)))
        # The turn is the whole buffer, its closing silence included, as at OpenAI:
        # cutting where the silence began would clip a trailing consonant.
        await self.commit()

    async def commit(self) -> None:
        """Close the turn (the client's ``commit``, or the VAD's stop) and transcribe
        it; an empty buffer is an error, as at OpenAI."""
        audio = self._audio()
        if not len(audio):
            await self.error("input_audio_buffer_commit_empty", "the input audio buffer is empty")
            return
        item = self._item or new_id("item")
        start = self._buffer_start / SAMPLE_RATE
        self.turn_times[item] = (start, start + len(audio) / SAMPLE_RATE)
        await self._send(events.committed(item, self._previous))
        self._previous, self._item = item, None
        self._drop_before(self._buffer_start + len(audio))
        self._enqueue(self._final(item, audio, time.monotonic()))

    async def clear(self) -> None:
        """Drop the buffered audio and any open turn."""
        self._drop_before(self._received)
        self._item = None
        if self._vad is not None:
            self._vad.reset()
        await self._send(events.cleared())

    async def finish(self) -> None:
        """End of the stream (the client left, or the drain): flush the resampler,
        close an open turn, and wait until every queued transcription is sent."""
        await self._take(self._stream.flush())
        if self._item is not None:
            await self.commit()
        if self._work is not None:
            await self._work

    def abandon(self) -> None:
        """The client is gone: drop the queued transcriptions and stop the running one
        (its worker stops at its next check). Cancelling the last of the chain cancels
        each one it awaits."""
        if self._work is not None:
            self._work.cancel()

    def _enqueue(self, step: Coroutine[Any, Any, None]) -> None:
        previous = self._work

        async def after() -> None:
            try:
                if previous is not None:
                    await previous
            except asyncio.CancelledError:
                step.close()  # abandoned before it began
                raise
            try:
                await step
            except Exception as exc:  # one turn's failure must not stop the ones after it
                log.warning("realtime_turn_failed", error=repr(exc))

        self._work = asyncio.ensure_future(after())

    async def _partial(self, item: str) -> None:
        try:
            if item != self._item:
                return  # the turn closed while this waited: its final is coming
            # The audio as it is now, not when this was queued (behind a final, maybe).
            audio = self._audio()
            text = await self._transcriber(audio, self.config, final=False, context=self._context)
        except TranscriptionFailed:
            return  # a partial is a courtesy; the final will come
        finally:
            self._partial_pending = False
        if text is None:
            # No worker free: try again with the next frame, not a whole interval later.
            self._since_partial = int(self.limits.partial_seconds * SAMPLE_RATE)
        elif text:
            started = self._started_at.pop(item, None)
            if started is not None:  # the turn's first partial
                self._observe("partial", time.monotonic() - started)
            await self._send(events.delta(item, text))

    async def _final(self, item: str, audio: np.ndarray, ended: float) -> None:
        self._started_at.pop(item, None)
        try:
            text = await self._transcriber(audio, self.config, final=True, context=self._context)
        except TranscriptionFailed as exc:
            # The next turn decodes without this one's audio: its text is unknown.
            self._context = self._context.then(np.zeros(0, np.float32), "")
            await self._send(events.failed(item, exc.code, exc.message))
            return
        text = text or ""
        self._context = self._context.then(audio, text)
        await self._send(events.completed(item, text, len(audio) / SAMPLE_RATE))
        self.turn_times.pop(item, None)
        self._observe("final", time.monotonic() - ended)

    def _audio(self) -> np.ndarray:
        return np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.float32)

    def _drop_before(self, sample: int) -> None:
        audio = self._audio()
        keep = audio[max(0, sample - self._buffer_start) :]
        self._buffer = [keep] if len(keep) else []
        self._buffer_start = max(self._buffer_start, min(sample, self._received))

    @staticmethod
    def _ms(sample: int) -> int:
        return sample * 1000 // SAMPLE_RATE


class events:  # noqa: N801 - a namespace of builders, read as events.delta(...)
    """OpenAI's realtime transcription server events."""

    @staticmethod
    def _event(kind: str, **fields: Any) -> Event:
        return {"type": kind, "event_id": new_id("event"), **fields}

    @classmethod
    def error(cls, code: str, message: str, param: str | None) -> Event:
        return cls._event("error", error={"type": "invalid_request_error", "code": code,
                                          "message": message, "param": param})  # fmt: skip

    @classmethod
    def speech_started(cls, item: str, ms: int) -> Event:
        return cls._event("input_audio_buffer.speech_started", item_id=item, audio_start_ms=ms)

    @classmethod
    def speech_stopped(cls, item: str, ms: int) -> Event:
        return cls._event("input_audio_buffer.speech_stopped", item_id=item, audio_end_ms=ms)

    @classmethod
    def committed(cls, item: str, previous: str | None) -> Event:
        return cls._event("input_audio_buffer.committed", item_id=item, previous_item_id=previous)

    @classmethod
    def cleared(cls) -> Event:
        return cls._event("input_audio_buffer.cleared")

    @classmethod
    def delta(cls, item: str, text: str) -> Event:
        return cls._event("conversation.item.input_audio_transcription.delta",
                          item_id=item, content_index=0, delta=text)  # fmt: skip

    @classmethod
    def failed(cls, item: str, code: str, message: str) -> Event:
        error = {"type": "server_error", "code": code, "message": message}
        return cls._event("conversation.item.input_audio_transcription.failed",
                          item_id=item, content_index=0, error=error)  # fmt: skip

    @classmethod
    def session(cls, kind: str, session: dict[str, Any]) -> Event:
        return cls._event(kind, session=session)

    @classmethod
    def completed(cls, item: str, text: str, seconds: float) -> Event:
        return cls._event("conversation.item.input_audio_transcription.completed",
                          item_id=item, content_index=0, transcript=text,
                          usage={"type": "duration", "seconds": round(seconds, 3)})  # fmt: skip
