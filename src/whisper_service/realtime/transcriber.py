"""A live session's turns through the service's scheduler and engine.

A final goes through the scheduler like any request (queue, deadline, drain), ahead
of everything else waiting (a live caller is waiting for it); a partial only when a
worker is free right now, so partials never queue behind other
work or hold a final back. Partials decode with one beam: the final replaces them.
"""

from __future__ import annotations

import time

import numpy as np

from whisper_service.engines import CancelToken, Engine, TranscribeOptions
from whisper_service.realtime.session import SessionConfig, TranscriptionFailed
from whisper_service.serving.runtime import Runtime
from whisper_service.serving.scheduler import Rejected

PREVIOUS_CHARS = 200


class ScheduledTranscriber:
    """Transcribes turns on the process's inference workers."""

    def __init__(self, runtime: Runtime, engine: Engine) -> None:
        self.runtime = runtime
        self.engine = engine

    async def __call__(
        self, audio: np.ndarray, config: SessionConfig, *, final: bool, previous: str
    ) -> str:
        """The turn's text; TranscriptionFailed when it could not run."""
        scheduler = self.runtime.scheduler
        if not final and not scheduler.idle_worker:
            return ""
        settings = self.runtime.settings
        # The caller's prompt, then the last turn's words (Whisper's own conditioning on
        # previous text, which a turn cut at a pause would otherwise lose).
        context = " ".join(p for p in (config.prompt, previous[-PREVIOUS_CHARS:]) if p)
        options = TranscribeOptions(
            language=config.language,
            prompt=context or None,
            beam_size=settings.default_beam_size if final else 1,
        )
        token = CancelToken(deadline=time.monotonic() + settings.request_timeout_seconds)
        engine = self.engine
        try:
            result = await scheduler.run(
                lambda t: engine.transcribe(audio, options, t), token, priority=True
            )
        except Rejected as exc:
            raise TranscriptionFailed(exc.reason or exc.code, exc.message) from exc
        return result.text
