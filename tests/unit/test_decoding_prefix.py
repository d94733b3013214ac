"""The engines' decoding prefix, which a live session's finals use to decode a turn
after the previous one's audio: the forced text is left out of the result, on both
engines, with the real model on real speech."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.support import MODEL_CACHE, TEST_THREADS, assert_transcript, ljspeech
from tests.support.speakers import load
from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines import Engine, TranscribeOptions
from whisper_service.models import ModelFormat, resolve_model


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def engine(request: pytest.FixtureRequest) -> Engine:
    cls: Any
    if request.param == "faster-whisper":
        from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine

        cls, fmt, compute = FasterWhisperEngine, ModelFormat.CTRANSLATE2, "int8"
    else:
        from whisper_service.engines.openai_whisper_engine import OpenAIWhisperEngine

        cls, fmt, compute = OpenAIWhisperEngine, ModelFormat.OPENAI_WHISPER, "float32"
    artifact = resolve_model("tiny.en", fmt, MODEL_CACHE)
    engine: Engine = cls(artifact, device="cpu", compute_type=compute, threads=TEST_THREADS,
                         workers=1)  # fmt: skip
    return engine


def test_the_result_holds_only_what_follows_the_prefix(engine: Engine) -> None:
    first, second = ljspeech()[:2]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    audio = np.concatenate([load(first.path), pause, load(second.path)])
    result = engine.transcribe(audio, TranscribeOptions(language="en", prefix=first.reference))
    assert_transcript(result.text, second.reference, max_wer=0.25)  # 4 words: one may differ
    assert len(result.segments) == 1
    # The tokens are the text's own: the forced prefix is not among them.
    assert len(result.segments[0].tokens) < 12


def test_a_prefix_is_for_one_window_and_a_short_text(engine: Engine) -> None:
    long = np.zeros(31 * SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(ValueError, match="30 s"):
        engine.transcribe(long, TranscribeOptions(prefix="words"))
    with pytest.raises(ValueError, match="characters"):
        engine.transcribe(long[:SAMPLE_RATE], TranscribeOptions(prefix="word " * 200))
