"""One live transcription session, apart from its transport: client audio in, turns
found (server VAD, or the client's commits), each turn transcribed, events out.

The transport (a WebSocket route) hands frames and commands to a ``Session`` and
sends what ``send`` receives. Events are OpenAI's realtime transcription events as
dicts (``events``); the native stream maps them to its own.

Partial text: while a turn is open, its audio so far is re-decoded every
``partial_seconds``; each decode is a ``delta`` event that carries only the words new
since the last one, once two consecutive partials agree on them (``increments``; the
whole partial is ``partial_text``, for protocols that show it), and the turn's final text
comes when it closes (``completed``, after a last delta with its words not yet sent).
Transcription goes through ``Transcriber`` (the scheduler, in the service), one request
at a time per session, in order.

Everything a session holds is bounded: the audio of the open turn (cut at
``max_turn_seconds``, whether server VAD or the client commits), the audio kept while
no turn is open (server VAD: only what prefix padding may reach back to), the turns
waiting to be decoded (``max_pending_turns``: past it a client's commit is refused
with an error event; a turn server VAD would close stays open, the next speech joining
it, until a waiting turn is decoded; one that reaches the turn cap first fails at
once). A commit needs ``MIN_COMMIT_SECONDS`` of audio, as at OpenAI. What the session
holds is reported to ``hold`` (the process's audio budget, in the service), which may
refuse a frame.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import structlog

from whisper_service.audio import SAMPLE_RATE
from whisper_service.realtime.audio import FrameError, PcmStream
from whisper_service.realtime.increments import Increments
from whisper_service.realtime.vad import FRAME, StreamingVad, TurnDetection

log = structlog.get_logger(__name__)

Event = dict[str, Any]
Send = Callable[[Event], Awaitable[None]]
# Told each latency: ("final", end of turn -> completed), ("partial", speech -> first delta).
Observe = Callable[[str, float], None]
# Told the bytes of audio the session holds now; False refuses them (the frame that
# would have grown it is dropped).
Hold = Callable[[int], bool]
Step = Callable[[], Awaitable[None]]
# OpenAI refuses to commit less than 100 ms of audio: nothing to transcribe, and a
# final per commit is the costliest thing a client can ask for.
MIN_COMMIT_SECONDS = 0.1
# Frames are taken a second at a time: the turn cap falls within a second of its
# length, and the event loop is never held by one large frame's VAD.
PIECE_SAMPLES = SAMPLE_RATE
# Larger frames are resampled, and their VAD run, off the event loop.
INLINE_SAMPLES = SAMPLE_RATE // 4
BYTES_PER_SAMPLE = 4  # float32


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
        self,
        audio: np.ndarray,
        config: SessionConfig,
        *,
        final: bool,
        context: Context,
        urgent: bool = True,
    ) -> str | None:
        """The text of 16 kHz ``audio``; ``final`` for a closed turn; ``context``: the
        turns before, which Whisper decodes on from, as from one window to the next;
        ``urgent``: a final the caller waits for now, not one of a backlog. None: a
        partial not decoded now, for want of a free worker (finals always are)."""
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
    partial text is refreshed (the first time after ``first_partial_seconds`` of
    speech), how far ahead of real time a client may send, how many closed turns may
    wait to be decoded."""

    max_turn_seconds: float = 30.0
    partial_seconds: float = 1.0
    first_partial_seconds: float = 0.5
    max_ahead_seconds: float = 120.0
    max_pending_turns: int = 4


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
        hold: Hold | None = None,
    ) -> None:
        self.limits = limits or SessionLimits()
        self._transcriber = transcriber
        self._send = send
        self._observe = observe or (lambda _kind, _seconds: None)
        self._hold = hold or (lambda _bytes: True)
        self._started_at: dict[str, float] = {}  # open turns: when speech started
        self.configure(config)
        self._buffer: list[np.ndarray] = []  # the open turn's audio (16 kHz)
        self._buffered = 0  # its samples
        self._buffer_start = 0  # its first sample, on the session's timeline
        self._received = 0  # samples received in all
        self._item: str | None = None  # the open turn's item id (once speech started)
        self._previous: str | None = None
        self._steps: deque[Step] = deque()  # transcriptions waiting, in order
        self._worker: asyncio.Task[None] | None = None  # runs them, one at a time
        self._finals = 0  # closed turns waiting or being decoded
        self._final_samples = 0  # their audio
        self._decoded = asyncio.Event()  # set as each final is done
        self._stop_pending: int | None = None  # a VAD stop held back for want of room
        self._since_partial = 0
        self._partial_pending = False  # one partial waits or runs at a time
        self._context = Context()  # the last turns' finals
        self.turn_times: dict[str, tuple[float, float | None]] = {}  # item: start, end (s)
        self._increments: dict[str, Increments] = {}  # open turns: their partials and deltas

    def partial_text(self, item: str) -> str | None:
        """The open turn ``item``'s latest partial text, whole; None once it closed."""
        increments = self._increments.get(item)
        return increments.latest if increments is not None else None

    @property
    def received_seconds(self) -> float:
        """Audio received so far, in seconds."""
        return self._received / SAMPLE_RATE

    @property
    def held_bytes(self) -> int:
        """The audio this session holds: the open turn's, the closed turns' waiting to
        be decoded, and the last turn's (the next final's context)."""
        samples = self._buffered + self._final_samples + len(self._context.audio)
        return samples * BYTES_PER_SAMPLE

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
            if len(frame) // 2 > INLINE_SAMPLES:
                samples = await asyncio.to_thread(self._stream.push, frame)
            else:
                samples = self._stream.push(frame)
        except FrameError as exc:
            await self.error(exc.code, exc.message, "audio")
            return
        for start in range(0, len(samples), PIECE_SAMPLES):
            if not await self._take(samples[start : start + PIECE_SAMPLES]):
                return

    async def _take(self, samples: np.ndarray) -> bool:
        """Take 16 kHz samples; False if the audio budget refused them (dropped)."""
        if not self._hold(self.held_bytes + len(samples) * BYTES_PER_SAMPLE):
            await self.error(
                "memory_pressure",
                "this instance has no room for more audio now: the frame was dropped",
                "audio",
            )
            return False
        self._buffer.append(samples)
        self._buffered += len(samples)
        self._received += len(samples)
        self._since_partial += len(samples)
        if self._vad is not None:
            vad = self._vad
            found = (
                await asyncio.to_thread(vad.feed, samples)
                if len(samples) > INLINE_SAMPLES
                else vad.feed(samples)
            )
            for event in found:
                if event.kind == "started":
                    await self._speech_started(event.sample)
                else:
                    await self._speech_stopped(event.sample)
            if self._item is None:
                # No turn is open: keep only what a start's prefix padding may reach.
                padding = vad.detection.prefix_padding_ms * SAMPLE_RATE // 1000
                self._drop_before(self._received - padding - 2 * FRAME)
        if self._stop_pending is not None and self._room():
            stopped, self._stop_pending = self._stop_pending, None
            await self._speech_stopped(stopped)
        turn_open = self._item is not None or self._vad is None
        if turn_open and self._buffered >= self.limits.max_turn_seconds * SAMPLE_RATE:
            await self._close(by_client=False)  # cut, as Whisper's window is
        elif (
            self._item is not None
            and not self._partial_pending
            and self._since_partial >= self.limits.partial_seconds * SAMPLE_RATE
        ):
            self._since_partial = 0
            self._partial_pending = True
            self._enqueue(partial(self._partial, self._item))
        self._hold(self.held_bytes)
        return True

    def _room(self) -> bool:
        """Whether one more closed turn may wait to be decoded."""
        return self._finals < self.limits.max_pending_turns

    async def _speech_started(self, sample: int) -> None:
        if self._item is not None:  # a turn held open for want of room: it goes on
            self._stop_pending = None
            return
        # Audio before the prefix padding is not part of the turn; nor is the last
        # turn's, where the padding reaches back into it.
        self._drop_before(sample)
        start = self._buffer_start
        self._item = new_id("item")
        limits = self.limits
        first = min(limits.first_partial_seconds, limits.partial_seconds)
        self._since_partial = int((limits.partial_seconds - first) * SAMPLE_RATE)
        self._started_at[self._item] = time.monotonic()
        self.turn_times[self._item] = (start / SAMPLE_RATE, None)
        await self._send(events.speech_started(self._item, self._ms(start)))

    async def _speech_stopped(self, sample: int) -> None:
        if self._item is None:
            return
        if not self._room():  # closed once a waiting turn is decoded (``_take``)
            self._stop_pending = sample
            return
        await self._send(events.speech_stopped(self._item, self._ms(sample)))
        # The turn is the whole buffer, its closing silence included, as at OpenAI:
        # cutting where the silence began would clip a trailing consonant.
        await self._close(by_client=False)

    async def commit(self) -> None:
        """The client's ``commit``: close the turn and transcribe it. Less than
        MIN_COMMIT_SECONDS of audio is an error, as at OpenAI, and so is a commit while
        ``max_pending_turns`` turns wait (the audio stays, for the next commit). With
        server VAD on and no speech since the last turn, the turn is completed with an
        empty transcript, not decoded."""
        await self._close(by_client=True)

    async def _close(self, *, by_client: bool) -> None:
        """Close the turn (the client's commit, the VAD's stop, the turn cap, the end
        of the stream) and queue its final."""
        if self._buffered < MIN_COMMIT_SECONDS * SAMPLE_RATE:
            await self.error(
                "input_audio_buffer_commit_empty",
                f"the input audio buffer holds less than {MIN_COMMIT_SECONDS * 1000:.0f} ms "
                "of audio",
            )
            return
        full = not self._room()
        if full and by_client:
            await self.error(
                "too_many_pending_turns",
                f"{self._finals} turns are waiting to be transcribed, this session's limit: "
                "commit again once one is completed (the audio is kept)",
            )
            return
        audio = self._audio()
        # Server VAD heard no speech since the last turn: the client committed silence
        # (or noise). Whisper decoding it invents text ("Thank you."); it has none.
        speech = not (by_client and self._vad is not None and self._item is None)
        item = self._item or new_id("item")
        start = self._buffer_start / SAMPLE_RATE
        self.turn_times[item] = (start, start + len(audio) / SAMPLE_RATE)
        await self._send(events.committed(item, self._previous))
        self._previous, self._item, self._stop_pending = item, None, None
        self._drop_before(self._buffer_start + len(audio))
        if full:  # the turn cap, with no room: its audio can neither wait nor grow
            self._started_at.pop(item, None)
            self.turn_times.pop(item, None)
            self._increments.pop(item, None)
            await self._send(events.failed(item, "too_many_pending_turns",
                             "too many turns of this session are waiting to be "
                             "transcribed; this one was dropped"))  # fmt: skip
            return
        self._finals += 1
        self._final_samples += len(audio)
        self._enqueue(partial(self._final, item, audio, time.monotonic(), speech=speech))

    async def clear(self) -> None:
        """Drop the buffered audio and any open turn."""
        if self._item is not None:
            self._increments.pop(self._item, None)
        self._drop_before(self._received)
        self._item, self._stop_pending = None, None
        if self._vad is not None:
            self._vad.reset()
        self._hold(self.held_bytes)
        await self._send(events.cleared())

    async def finish(self) -> None:
        """End of the stream (the client left, or the drain): flush the resampler,
        close an open turn, and wait until every queued transcription is sent."""
        await self._take(self._stream.flush())
        if self._item is not None:
            while not self._room():
                self._decoded.clear()
                await self._decoded.wait()
            await self._close(by_client=False)
        while self._worker is not None and not self._worker.done():
            await self._worker

    def abandon(self) -> None:
        """The client is gone: drop the queued transcriptions and stop the running one
        (its worker stops at its next check)."""
        self._steps.clear()
        if self._worker is not None:
            self._worker.cancel()

    def _enqueue(self, step: Step) -> None:
        self._steps.append(step)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        while self._steps:
            step = self._steps.popleft()
            try:
                await step()
            except Exception as exc:  # one turn's failure must not stop the ones after it
                log.warning("realtime_turn_failed", error=repr(exc))

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
            increment = self._increments.setdefault(item, Increments()).partial(text)
            # Sent even when it adds nothing (a dialect that shows increments drops it):
            # a protocol that shows whole partials shows this one.
            await self._send(events.delta(item, increment))

    async def _final(
        self, item: str, audio: np.ndarray, ended: float, *, speech: bool = True
    ) -> None:
        self._started_at.pop(item, None)
        # Closed: no whole partial any more, and the last delta is the increments' alone.
        increments = self._increments.pop(item, Increments())
        # A session with turns queued behind this one is behind already: it waits in
        # line with everything else instead of going ahead of it (a client committing
        # in a loop would otherwise hold a worker ahead of every request).
        urgent = self._finals == 1
        try:
            text = (
                await self._transcriber(
                    audio, self.config, final=True, context=self._context, urgent=urgent
                )
                if speech
                else ""
            )
        except Exception as exc:
            if isinstance(exc, TranscriptionFailed):
                code, message = exc.code, exc.message
            else:  # a bug, or input that breaks something unforeseen: said, not swallowed
                log.exception("realtime_turn_failed", item_id=item)
                code, message = "transcription_failed", "the turn could not be transcribed"
            # The next turn decodes without this one's audio: its text is unknown.
            self._context = self._context.then(np.zeros(0, np.float32), "")
            await self._send(events.failed(item, code, message))
            return
        finally:
            self._finals -= 1
            self._final_samples -= len(audio)
            self._decoded.set()
        text = text or ""
        if speech:  # a speechless turn is no context: the one before stays the next's
            self._context = self._context.then(audio, text)
        self._hold(self.held_bytes)
        if rest := increments.final(text):
            await self._send(events.delta(item, rest))
        await self._send(events.completed(item, text, len(audio) / SAMPLE_RATE))
        self.turn_times.pop(item, None)
        if speech:
            self._observe("final", time.monotonic() - ended)

    def _audio(self) -> np.ndarray:
        return np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.float32)

    def _drop_before(self, sample: int) -> None:
        drop = min(sample, self._received) - self._buffer_start
        if drop <= 0:
            return
        audio = self._audio()
        keep = audio[drop:]
        self._buffer = [keep] if len(keep) else []
        self._buffered = len(keep)
        self._buffer_start += drop

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
