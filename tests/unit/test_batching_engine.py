"""Batching across requests with the real model: concurrent requests' model calls
run as batches, and each request gets the words it gets alone (issue 14)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.support import LONG_AUDIO, MODEL_CACHE, TEST_THREADS, ljspeech, pooled_wer
from tests.support.speakers import load
from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines import Segment, TranscribeOptions
from whisper_service.engines.batching import BatchLimits
from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
from whisper_service.engines.speech import WINDOW_SECONDS
from whisper_service.long_audio import regions_for
from whisper_service.models import ModelFormat, resolve_model
from whisper_service.observability.telemetry import telemetry

OPTIONS = TranscribeOptions(language="en")


def engine(batch: BatchLimits | None) -> FasterWhisperEngine:
    artifact = resolve_model("tiny.en", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    # Batches reported to the service's metrics, as startup wires it.
    return FasterWhisperEngine(artifact, device="cpu", compute_type="int8",
                               threads=TEST_THREADS, workers=1, batch=batch,
                               batch_report=telemetry.batch_ran)  # fmt: skip


def batched_calls(call: str) -> tuple[float, float]:
    """(windows, calls) of batched model calls so far."""
    total = REGISTRY.get_sample_value("whisper_batch_size_sum", {"call": call}) or 0.0
    count = REGISTRY.get_sample_value("whisper_batch_size_count", {"call": call}) or 0.0
    return total, count


def at_once(
    batching: FasterWhisperEngine, audio: np.ndarray, options: list[TranscribeOptions]
) -> tuple[list[str], list[BaseException]]:
    """``audio`` decoded with each of ``options`` on its own thread, all at once: the
    texts, and what was raised."""
    texts = [""] * len(options)
    errors: list[BaseException] = []
    start = threading.Barrier(len(options))

    def decode(index: int) -> None:
        start.wait()
        try:
            texts[index] = batching.transcribe(audio, options[index]).text
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(len(options))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return texts, errors


@pytest.fixture(scope="module")
def recordings() -> list[np.ndarray]:
    # Eight short utterances and 70 s of a long one (three windows, each decoded on
    # from the text before it): they batch with each other.
    return [load(e.path) for e in ljspeech()] + [load(LONG_AUDIO)[: 70 * SAMPLE_RATE]]


def test_concurrent_requests_batch_and_keep_their_words(recordings: list[np.ndarray]) -> None:
    alone = engine(None)
    expected = [alone.transcribe(audio, OPTIONS).text for audio in recordings]
    batching = engine(BatchLimits(max_size=8, max_wait=0.05, concurrency=1))
    before = batched_calls("generate")
    texts: list[str] = [""] * len(recordings)
    start = threading.Barrier(len(recordings))

    def request(index: int) -> None:
        start.wait()
        texts[index] = batching.transcribe(recordings[index], OPTIONS).text

    threads = [threading.Thread(target=request, args=(i,)) for i in range(len(recordings))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    windows, calls = (a - b for a, b in zip(batched_calls("generate"), before, strict=True))
    assert calls > 0
    assert windows / calls >= 2  # they did share calls
    assert pooled_wer(expected, texts) <= 0.005


def test_a_lone_request_through_the_gatherer_is_the_lone_engines(
    recordings: list[np.ndarray],
) -> None:
    # The same model inputs on the same machine: no room for a word to differ (a
    # five-second wait allowed for company, never taken: nobody else is inside).
    alone, batching = engine(None), engine(BatchLimits(max_size=8, max_wait=5.0, concurrency=1))
    chosen = recordings[:2] + recordings[-1:]
    expected = [alone.transcribe(audio, OPTIONS).text for audio in chosen]
    assert pooled_wer(expected, [batching.transcribe(a, OPTIONS).text for a in chosen]) == 0.0


def test_a_final_in_context_and_a_turn_alone_at_once_both_decode() -> None:
    # A live final decodes after the previous turn with <|notimestamps|> and that
    # turn's text forced; another talker's first turn decodes alone, with timestamps.
    # CTranslate2 refuses the two prompts in one batch ("the same number of task
    # tokens after <|startoftranscript|>"), and the whole batch failed: both finals
    # were lost (found by benchmarks/realtime.py --apart at 8 streams: 4 turns).
    audio = load(LONG_AUDIO)[: 12 * SAMPLE_RATE]
    options = [TranscribeOptions(language="en", prefix="Good morning."), OPTIONS]
    alone = engine(None)
    expected = [alone.transcribe(audio, o).text for o in options]
    batching = engine(BatchLimits(max_size=8, max_wait=0.5, concurrency=1))
    before = batched_calls("generate")
    texts, errors = at_once(batching, audio, options)
    assert not errors
    assert pooled_wer(expected, texts) <= 0.005
    _, calls = (a - b for a, b in zip(batched_calls("generate"), before, strict=True))
    assert calls >= 2  # apart: one call each at least


def test_regions_of_a_window_each_keep_their_segments_inside_them() -> None:
    # 75 s of the radio address: three regions of at most a window, each decoded
    # with silence after it to the window's end; whatever Whisper places in that
    # silence is cut off (uncut, a segment ended at 28.84 s in a region ending at
    # 28.8 s), and the words are the sequential path's.
    audio = load(LONG_AUDIO)[: 75 * SAMPLE_RATE]
    batching = engine(BatchLimits(max_size=8, max_wait=0.05, concurrency=1))
    regions = regions_for(batching, audio, OPTIONS, long_from=60.0)
    assert regions is not None
    assert all(end - start <= WINDOW_SECONDS for start, end in regions)
    streamed: list[Segment] = []
    result = batching.transcribe_regions(audio, regions, OPTIONS, None, streamed.append)
    assert result.segments == streamed
    for segment in result.segments:
        _start, end = next(r for r in regions if r[0] <= segment.start < r[1])
        assert segment.end <= end, segment
    assert result.segments[-1].end <= 75.0
    sequential = batching.transcribe(audio, OPTIONS).text
    assert pooled_wer([sequential], [result.text]) <= 0.05


def test_a_fitted_window_and_a_30_s_one_at_once_both_decode() -> None:
    # A live partial encodes a window fitted to its audio (10 s here), a request
    # beside it 30 s: their encoder outputs differ in length and cannot stack into one
    # decoder call (both were lost before decoder calls were keyed by that length).
    audio = load(LONG_AUDIO)[: 6 * SAMPLE_RATE]
    options = [
        TranscribeOptions(language="en", beam_size=1, fallback=False, fitted_window=True),
        TranscribeOptions(language="en", beam_size=1, fallback=False),
    ]
    alone = engine(None)
    expected = [alone.transcribe(audio, o).text for o in options]
    texts, errors = at_once(engine(BatchLimits(max_size=8, max_wait=0.5, concurrency=1)),
                            audio, options)  # fmt: skip
    assert not errors
    assert pooled_wer(expected, texts) <= 0.005
