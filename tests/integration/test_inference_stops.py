"""A cancelled token or a passed deadline stops real inference mid-way, on both engines
(the HTTP side, 504 and a freed worker, is in tests/http/test_deadlines.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import LONG_AUDIO, MODEL_CACHE
from whisper_service.audio import decode_audio
from whisper_service.config import load_settings
from whisper_service.engines.base import Cancelled, CancelToken, TranscribeOptions
from whisper_service.serving.startup import load_model


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_cancelled_token_stops_the_engine_between_windows(engine: str, audio_dir: Path) -> None:
    settings = load_settings(engine=engine, model_cache_dir=MODEL_CACHE, warmup=False)
    loaded = load_model(settings).engine
    audio = decode_audio(audio_dir / LONG_AUDIO, max_seconds=600).samples
    token = CancelToken()
    progress: list[float] = []

    def cancel_after_first_segment(done: float) -> None:
        progress.append(done)
        token.cancel("client_disconnected")

    if engine == "faster-whisper":
        with pytest.raises(Cancelled, match="client_disconnected"):
            loaded.transcribe(audio, TranscribeOptions(), token, cancel_after_first_segment)
        assert len(progress) == 1  # stopped right after the first segment
    else:
        # openai-whisper reports no progress mid-way: a deadline stops it instead. The
        # whole file takes ~15 s here; one window ~1 s.
        token.deadline = time.monotonic() + 1.0
        started = time.monotonic()
        with pytest.raises(Cancelled, match="deadline_exceeded"):
            loaded.transcribe(audio, TranscribeOptions(), token)
        assert time.monotonic() - started < 10, "inference ran on past its deadline"
    # the engine is usable again afterwards
    result = loaded.transcribe(audio[: 16_000 * 5], TranscribeOptions(), CancelToken())
    assert result.duration == 5.0
