"""Live finals on spontaneous speech with the real model (tiny.en in production's
float32), streamed through a session in-process: a final decoded after the previous
turn does not transcribe that turn again, a turn without speech has no text, and a
commit of silence with server VAD off has none either (issue 25, item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import MODEL_CACHE, TEST_THREADS, normalize, word_error_rate
from tests.support.live import finals, stream, turn_starts
from tests.support.speakers import ami_excerpts, meeting
from whisper_service.audio import SAMPLE_RATE
from whisper_service.config import load_settings
from whisper_service.engines import TranscribeOptions
from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
from whisper_service.models import ModelFormat, resolve_model
from whisper_service.realtime.session import SessionConfig

pytestmark = pytest.mark.anyio
SETTINGS = load_settings()


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    artifact = resolve_model("tiny.en", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    return FasterWhisperEngine(artifact, device="cpu", compute_type="float32",
                               threads=TEST_THREADS, workers=1)  # fmt: skip


async def test_a_final_does_not_say_the_turn_before_again(engine: FasterWhisperEngine) -> None:
    # trn00: server VAD cuts "Is there much more in it than | he said yesterday?" at a
    # pause; decoded after the first half, the second said it all again.
    excerpt = ami_excerpts()[0]
    texts = finals(await stream(engine, excerpt.samples, SETTINGS))
    assert len(texts) >= 4
    joined = normalize(" ".join(texts))
    assert joined.count("is there much more in it") == 1, texts
    assert "said yesterday" in joined
    assert not any(t[:1] in ",.;:!?" for t in texts if t), texts


async def test_a_turn_without_speech_has_no_text(engine: FasterWhisperEngine) -> None:
    # trn01: server VAD opens one turn on a noise where the reference has no speech.
    excerpt = ami_excerpts()[1]
    seen = await stream(engine, excerpt.samples, SETTINGS)
    assert finals(seen) == [""]
    starts = turn_starts(seen).values()
    assert starts  # a turn was opened and decoded
    assert not any(a <= s + 0.5 and s <= b for s in starts for a, b, _ in excerpt.reference)


async def test_a_committed_silence_without_server_vad_has_no_text(
    engine: FasterWhisperEngine,
) -> None:
    # Whisper writes "You" over two seconds of silence (no-speech probability 0.94),
    # which its own rule keeps.
    alone = engine.transcribe(np.zeros(2 * SAMPLE_RATE, np.float32),
                              TranscribeOptions(language="en"))  # fmt: skip
    assert alone.text.strip()  # what the rule is there for
    quiet = np.zeros(2 * SAMPLE_RATE, np.float32)
    no_vad = SessionConfig(rate=SAMPLE_RATE, language="en", turn_detection=None)
    seen = await stream(engine, quiet, SETTINGS, no_vad)
    assert finals(seen) == [""]


async def test_a_telephone_call_live_is_as_close_to_transcribe_as_read_speech(
    engine: FasterWhisperEngine,
) -> None:
    # Two people on a telephone line, 30 s (held out: chose nothing): 2.5 % of words
    # apart from the whole file's text measured.
    call = meeting().samples
    whole = engine.transcribe(call, TranscribeOptions(language="en", beam_size=5)).text
    texts = finals(await stream(engine, call, SETTINGS))
    assert word_error_rate(whole, " ".join(texts)) <= 0.06
