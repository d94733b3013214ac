"""A request deadline stops real inference mid-way, on both engines."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import LONG_AUDIO, MODEL_CACHE, LiveServer
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


@pytest.fixture(scope="module")
def hurried_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(WHISPER_REQUEST_TIMEOUT_SECONDS="1")


def test_deadline_over_http_is_504_and_frees_the_worker(
    hurried_server: LiveServer, audio_dir: Path
) -> None:
    with (audio_dir / LONG_AUDIO).open("rb") as fp:
        response = httpx.post(
            f"{hurried_server.url}/transcribe", files={"file": ("long.wav", fp)}, timeout=120
        )
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "deadline_exceeded"
    # The scheduler frees a worker only when its thread has returned: running == 0 right
    # after the 504 means inference really stopped rather than running on for nobody.
    ready = httpx.get(f"{hurried_server.url}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["queue"]["running"] == 0
