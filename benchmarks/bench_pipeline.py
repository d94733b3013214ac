"""Micro-benchmarks of the request pipeline's own pieces: decoding, formats, the
scheduler's overhead, and each engine on fixed audio."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from tests.support import AUDIO
from whisper_service.audio import decode_audio
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.engines.base import CancelToken, TranscribeOptions
from whisper_service.formats import to_srt, to_tsv, to_vtt

OPTIONS = TranscribeOptions(language="en")


@pytest.mark.parametrize("name", ["jfk.flac", "multilingual.mp3", "stereo_diarization.wav"])
def test_decode(benchmark: BenchmarkFixture, name: str) -> None:
    path: Path = AUDIO / name
    benchmark(decode_audio, path, max_seconds=600)


@pytest.fixture(scope="module")
def long_transcription(engines: dict[str, Any]) -> Any:
    samples = decode_audio(AUDIO / "long/gwbush_radio_address_2008-11-01.wav", max_seconds=600)
    return engines["faster-whisper-int8"].transcribe(samples.samples, OPTIONS)


@pytest.mark.parametrize("writer", [to_srt, to_vtt, to_tsv], ids=["srt", "vtt", "tsv"])
def test_formats(benchmark: BenchmarkFixture, long_transcription: Any, writer: Any) -> None:
    benchmark(writer, long_transcription)


def test_scheduler_overhead(benchmark: BenchmarkFixture) -> None:
    """Admission, a worker-thread hop and back, for work that does nothing."""
    loop = asyncio.new_event_loop()
    scheduler = Scheduler(workers=1, queue_size=4, queue_timeout=10)

    def once() -> None:
        loop.run_until_complete(scheduler.run(lambda _t: None, CancelToken()))

    benchmark(once)
    scheduler.close()
    loop.close()


@pytest.mark.parametrize(
    "engine", ["faster-whisper-int8", "faster-whisper-float32", "openai-whisper"]
)
def test_engine_jfk(
    benchmark: BenchmarkFixture, engines: dict[str, Any], jfk: np.ndarray, engine: str
) -> None:
    result = benchmark.pedantic(
        engines[engine].transcribe, args=(jfk, OPTIONS), rounds=3, warmup_rounds=1
    )
    assert "country" in result.text
