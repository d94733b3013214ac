"""Fixtures for the pytest-benchmark suites: real audio, loaded engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import AUDIO, MODEL_CACHE, TEST_THREADS
from whisper_service.audio import decode_audio
from whisper_service.config import load_settings
from whisper_service.serving.startup import load_model


@pytest.fixture(scope="session")
def jfk_path() -> Path:
    return AUDIO / "jfk.flac"


@pytest.fixture(scope="session")
def jfk() -> np.ndarray:
    return decode_audio(AUDIO / "jfk.flac", max_seconds=60).samples


def _engine(**overrides: Any) -> Any:
    settings = load_settings(
        app_env="development", model_cache_dir=MODEL_CACHE, cpu_threads=TEST_THREADS, **overrides
    )
    return load_model(settings).engine


@pytest.fixture(scope="session")
def engines() -> dict[str, Any]:
    return {
        "faster-whisper-int8": _engine(engine="faster-whisper", compute_type="int8"),
        "faster-whisper-float32": _engine(engine="faster-whisper", compute_type="float32"),
        "openai-whisper": _engine(engine="openai-whisper"),
    }
