"""Live sessions in-process with a real engine: audio through one ``Session`` as fast
as it decodes, for tests and benchmarks of the finals' words."""

from __future__ import annotations

from typing import Any

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import Settings
from whisper_service.engines import Engine
from whisper_service.realtime.session import Session, SessionConfig, SessionLimits
from whisper_service.realtime.transcriber import ScheduledTranscriber
from whisper_service.serving.runtime import Runtime

FRAME = SAMPLE_RATE // 10
# Finals only: partials do not change them, and would only slow the run down.
NO_PARTIALS = SessionLimits(partial_seconds=1e9, first_partial_seconds=1e9)
SERVER_VAD = SessionConfig(rate=SAMPLE_RATE, language="en")
COMPLETED = "conversation.item.input_audio_transcription.completed"


async def stream(engine: Engine, audio: np.ndarray, settings: Settings,
                 config: SessionConfig = SERVER_VAD) -> list[dict[str, Any]]:  # fmt: skip
    """16 kHz ``audio`` through one session in 100 ms frames (committed at the end
    where server VAD is off); every event it sent."""
    runtime = Runtime(settings, Scheduler(workers=1, queue_size=16, queue_timeout=600))
    seen: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        seen.append(event)

    session = Session(config, ScheduledTranscriber(runtime, engine), send, NO_PARTIALS)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    for start in range(0, len(pcm), FRAME):
        await session.append(pcm[start : start + FRAME].tobytes())
    if config.turn_detection is None:
        await session.commit()
    await session.finish()
    return seen


def ljspeech_reading() -> tuple[np.ndarray, str]:
    """The eight LJSpeech utterances read one after another, 0.8 s apart, and their
    human transcripts joined (the radio address has none)."""
    from tests.support import ljspeech
    from tests.support.speakers import load

    pause = np.zeros(int(0.8 * SAMPLE_RATE), dtype=np.float32)
    entries = ljspeech()
    audio = np.concatenate([part for e in entries for part in (load(e.path), pause)])
    return audio, " ".join(e.reference for e in entries)


def turn_starts(seen: list[dict[str, Any]]) -> dict[str, float]:
    """Where server VAD heard each turn's speech start, in seconds, by item id."""
    return {e["item_id"]: e["audio_start_ms"] / 1000 for e in seen
            if e["type"] == "input_audio_buffer.speech_started"}  # fmt: skip


def completed(seen: list[dict[str, Any]]) -> dict[str, str]:
    """The ``completed`` transcripts by item id, in the order they came."""
    return {e["item_id"]: e["transcript"] for e in seen if e["type"] == COMPLETED}


def finals(seen: list[dict[str, Any]]) -> list[str]:
    """The ``completed`` transcripts among a session's events, in order."""
    return list(completed(seen).values())
