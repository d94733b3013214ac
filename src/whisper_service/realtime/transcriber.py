"""A live session's turns through the service's scheduler and engine.

A final goes through the scheduler like any request (queue, deadline, drain), ahead
of everything else waiting (a live caller is waiting for it), unless its session has
more turns queued behind it (then it waits in line: a session behind cannot catch up
by taking every freed worker). A partial runs only when a worker is free right now,
no final of any session is waiting or decoding, and fewer partials than inference
workers are decoding: partials never queue, and under load they thin out first, so
that a final shares the CPU with at most one partial per worker. Partials are a
glimpse the final replaces: one beam, no temperature fallback, and the encoder over a
window fitted to the turn so far instead of 30 s (a 30 s encoder pass was half a
partial's time; finals keep it: on spontaneous speech a shorter window cost words).

A final is decoded with the previous turn's audio before it and that turn's final
text forced as the decoder's prefix, so the model hears the turn in context as it
would in one 30 s window of a whole file (a turn alone is often a few seconds);
only the words after the prefix are the turn's, less what they say again of the
previous turn (``continuation``). A turn decoded alone that Whisper judges silence
has no text. Measured on the radio address: the
finals differ from /transcribe's words by 1.1 %, against 4.5 % (int8) and 3.2 %
(float32) with each turn decoded alone (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.capacity.scheduler import Rejected
from whisper_service.engines import CancelToken, Engine, TranscribeOptions, Transcription
from whisper_service.engines.base import MAX_PREFIX_CHARS, WINDOW_SAMPLES
from whisper_service.observability.telemetry import telemetry
from whisper_service.realtime.continuation import continuation
from whisper_service.realtime.session import Context, SessionConfig, TranscriptionFailed
from whisper_service.serving.runtime import Runtime

PROMPT_CHARS = 200
# Between the previous turn and this one when both are decoded together: a pause, as
# the stream had (a turn's own closing silence and prefix padding are kept too).
GAP = np.zeros(SAMPLE_RATE // 5, dtype=np.float32)
# Whisper's no-speech head over a turn decoded alone. On silence or steady noise it
# writes "You" with a no-speech probability of 0.94 and an average log-probability
# of -0.98, which Whisper's own rule (0.6, and below -1.0) keeps. A turn that server
# VAD heard as speech, or a client committed, is dropped only when Whisper is this
# sure: the speech turns decoded alone on ten AMI meeting excerpts, a telephone call,
# the radio address and the LJSpeech reading scored at most 0.52.
NO_SPEECH_PROB = 0.8


class ScheduledTranscriber:
    """Transcribes turns on the process's inference workers."""

    def __init__(self, runtime: Runtime, engine: Engine) -> None:
        self.runtime = runtime
        self.engine = engine

    async def __call__(
        self,
        audio: np.ndarray,
        config: SessionConfig,
        *,
        final: bool,
        context: Context,
        urgent: bool = True,
    ) -> str | None:
        """The turn's text; None for a partial no worker is free for right now;
        TranscriptionFailed when a final could not run. An ``urgent`` final goes ahead
        of other waiting work; one of a session's backlog waits in line."""
        runtime = self.runtime
        if final:
            runtime.realtime_finals += 1
        elif self._partial_may_run():
            runtime.realtime_partials += 1
        else:
            return None
        try:
            return await self._decode(audio, config, final, context, urgent)
        finally:
            if final:
                runtime.realtime_finals -= 1
            else:
                runtime.realtime_partials -= 1

    def _partial_may_run(self) -> bool:
        """A worker is free now, no final waits or decodes, and fewer partials than
        inference workers decode."""
        runtime = self.runtime
        return (
            runtime.scheduler.idle_worker
            and runtime.realtime_finals == 0
            and runtime.realtime_partials < runtime.settings.inference_workers
        )

    async def _decode(
        self, audio: np.ndarray, config: SessionConfig, final: bool, context: Context, urgent: bool
    ) -> str:
        settings = self.runtime.settings
        beam = (settings.realtime_final_beam_size or settings.default_beam_size) if final else 1
        if final and settings.realtime_final_context and _fits(audio, context):
            joined = np.concatenate([context.audio, GAP, audio])
            options = self._options(config, context.earlier, beam, prefix=context.text)
            text = (await self._run(joined, options, final, urgent)).text
            text = continuation(context.text, text)
            if _has_words(text):
                return text
            # Nothing after the prefix: the model may have ended with it. The turn alone.
        recent = " ".join(t for t in (context.earlier, context.text) if t)
        options = self._options(config, recent, beam)
        if not final:
            # A partial is a glimpse the final replaces: no hotter re-decodes, and a
            # window fitted to the turn so far, not 30 s (half a partial's time).
            options = replace(options, fallback=False, fitted_window=True)
        alone = await self._run(audio, options, final, urgent)
        return alone.text if _heard(alone) else ""

    def _options(
        self, config: SessionConfig, before: str, beam: int, prefix: str | None = None
    ) -> TranscribeOptions:
        # The caller's prompt, then the words before (Whisper's own conditioning on
        # previous text, which a turn cut at a pause would otherwise lose).
        prompt = " ".join(p for p in (config.prompt, before[-PROMPT_CHARS:]) if p)
        return TranscribeOptions(
            language=config.language, prompt=prompt or None, beam_size=beam, prefix=prefix
        )

    async def _run(
        self, audio: np.ndarray, options: TranscribeOptions, final: bool, urgent: bool
    ) -> Transcription:
        settings = self.runtime.settings
        token = CancelToken(deadline=time.monotonic() + settings.request_timeout_seconds)
        engine = self.engine
        attributes = {
            "whisper.realtime.turn": "final" if final else "partial",
            "whisper.realtime.context": options.prefix is not None,
            "whisper.audio.duration_seconds": round(len(audio) / SAMPLE_RATE, 3),
        }
        # In the session's trace (the WebSocket's server span), queue.wait inside it.
        with telemetry.span("realtime.transcribe", **attributes):
            try:
                return await self.runtime.scheduler.run(
                    lambda t: engine.transcribe(audio, options, t),
                    token,
                    priority=final and urgent,
                )
            except Rejected as exc:
                raise TranscriptionFailed(exc.reason or exc.code, exc.message) from exc


def _has_words(text: str) -> bool:
    # A turn of noise or breath may decode to a lone full stop or "...".
    return any(character.isalnum() for character in text)


def _heard(alone: Transcription) -> bool:
    """Whether a turn decoded alone holds speech: words, and Whisper's no-speech
    probability below NO_SPEECH_PROB in some segment."""
    segments = alone.segments
    silence = bool(segments) and all(s.no_speech_prob >= NO_SPEECH_PROB for s in segments)
    return _has_words(alone.text) and not silence


def _fits(audio: np.ndarray, context: Context) -> bool:
    """Whether the previous turn can be decoded with this one: it had text, and both
    fit one window."""
    total = len(context.audio) + len(GAP) + len(audio)
    return bool(context.text) and total <= WINDOW_SAMPLES and len(context.text) <= MAX_PREFIX_CHARS
