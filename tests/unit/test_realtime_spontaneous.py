"""Live finals on spontaneous speech with the real model (tiny.en in production's
float32), streamed through a session in-process: a final decoded after the previous
turn does not transcribe that turn again, a turn without speech has no text, and a
commit of silence with server VAD off has none either (issue 25, item 1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.support import MODEL_CACHE, TEST_THREADS, normalize, word_error_rate
from tests.support.speakers import ami_excerpts, meeting
from whisper_service.audio import SAMPLE_RATE
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import load_settings
from whisper_service.engines import TranscribeOptions
from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
from whisper_service.models import ModelFormat, resolve_model
from whisper_service.realtime.session import Session, SessionConfig, SessionLimits
from whisper_service.realtime.transcriber import ScheduledTranscriber
from whisper_service.serving.runtime import Runtime

pytestmark = pytest.mark.anyio
FRAME = SAMPLE_RATE // 10
# Finals only: partials do not change them, and would only slow the test down.
NO_PARTIALS = SessionLimits(partial_seconds=1e9, first_partial_seconds=1e9)
COMPLETED = "conversation.item.input_audio_transcription.completed"
SERVER_VAD = SessionConfig(rate=SAMPLE_RATE, language="en")


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    artifact = resolve_model("tiny.en", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    return FasterWhisperEngine(artifact, device="cpu", compute_type="float32",
                               threads=TEST_THREADS, workers=1)  # fmt: skip


async def stream(engine: FasterWhisperEngine, audio: np.ndarray,
                 config: SessionConfig = SERVER_VAD) -> list[dict[str, Any]]:  # fmt: skip
    """``audio`` through one session, as fast as it decodes (committed at the end
    where server VAD is off); every event it sent."""
    runtime = Runtime(load_settings(), Scheduler(workers=1, queue_size=16, queue_timeout=120))
    seen: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        seen.append(event)

    session = Session(config, ScheduledTranscriber(runtime, engine), send, NO_PARTIALS)
    for start in range(0, len(audio), FRAME):
        await session.append((np.clip(audio[start : start + FRAME], -1, 1) * 32767)
                             .astype("<i2").tobytes())  # fmt: skip
    if config.turn_detection is None:
        await session.commit()
    await session.finish()
    return seen


def finals(seen: list[dict[str, Any]]) -> list[str]:
    return [e["transcript"] for e in seen if e["type"] == COMPLETED]


async def test_a_final_does_not_say_the_turn_before_again(engine: FasterWhisperEngine) -> None:
    # trn00: server VAD cuts "Is there much more in it than | he said yesterday?" at a
    # pause; decoded after the first half, the second said it all again.
    excerpt = ami_excerpts()[0]
    texts = finals(await stream(engine, excerpt.samples))
    assert len(texts) >= 4
    joined = normalize(" ".join(texts))
    assert joined.count("is there much more in it") == 1, texts
    assert "said yesterday" in joined
    assert not any(t[:1] in ",.;:!?" for t in texts if t), texts


async def test_a_turn_without_speech_has_no_text(engine: FasterWhisperEngine) -> None:
    # trn01: server VAD opens one turn on a noise where the reference has no speech.
    excerpt = ami_excerpts()[1]
    seen = await stream(engine, excerpt.samples)
    assert finals(seen) == [""]
    started = [e["audio_start_ms"] / 1000 for e in seen if e["type"].endswith("speech_started")]
    assert not any(a <= s + 0.5 and s <= b for s in started for a, b, _ in excerpt.reference)


async def test_a_committed_silence_without_server_vad_has_no_text(
    engine: FasterWhisperEngine,
) -> None:
    # Whisper writes "You" over two seconds of silence (no-speech probability 0.94),
    # which its own rule keeps.
    alone = engine.transcribe(np.zeros(2 * SAMPLE_RATE, np.float32),
                              TranscribeOptions(language="en"))  # fmt: skip
    assert alone.text.strip()  # what the rule is there for
    quiet = np.zeros(2 * SAMPLE_RATE, np.float32)
    seen = await stream(engine, quiet, SessionConfig(rate=SAMPLE_RATE, language="en",
                                                     turn_detection=None))  # fmt: skip
    assert finals(seen) == [""]


async def test_a_telephone_call_live_is_as_close_to_transcribe_as_read_speech(
    engine: FasterWhisperEngine,
) -> None:
    # Two people on a telephone line, 30 s (held out: chose nothing): 2.5 % of words
    # apart from the whole file's text measured.
    call = meeting().samples
    whole = engine.transcribe(call, TranscribeOptions(language="en", beam_size=5)).text
    texts = finals(await stream(engine, call))
    assert word_error_rate(whole, " ".join(texts)) <= 0.06
