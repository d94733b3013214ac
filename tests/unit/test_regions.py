"""A long recording decoded as regions at once: where it is cut, how the regions'
results are joined and handed on, what stops them. The real model's words over
regions are tested in tests/integration/test_long_audio.py."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from tests.support import AUDIO, LONG_AUDIO
from tests.support.fakes import FakeEngine
from tests.support.speakers import ami_excerpts
from whisper_service.audio import SAMPLE_RATE, decode_audio
from whisper_service.engines import CancelToken, Segment, TranscribeOptions, Transcription
from whisper_service.engines.base import Cancelled, SegmentCallback, Word
from whisper_service.engines.batching import _cut_context
from whisper_service.engines.regions import (
    LEAD_IN_SECONDS,
    clipped,
    decode_regions,
    on_timeline,
    plan_regions,
    plan_window_regions,
)
from whisper_service.engines.speech import WINDOW_SECONDS
from whisper_service.long_audio import MIN_REGION_SPEECH_SECONDS, regions_for
from whisper_service.observability.context import request_id_var

OPTIONS = TranscribeOptions(language="en")


def segment(start: float, end: float, text: str, seek: int = 0) -> Segment:
    return Segment(0, seek, start, end, text, [], 0.0, -0.1, 1.0, 0.01)


def test_regions_tile_the_recording_cut_in_the_longest_pause_near_each_share() -> None:
    # 40 s of speech in eight 5 s spans; pauses of 0.2 s, except 1 s after the 4th
    # span (20 s of speech before it) and 0.3 s after the 3rd.
    speech, t = [], 0.0
    for index in range(8):
        speech.append((t, t + 5.0))
        t += 5.0 + {2: 0.3, 3: 1.0}.get(index, 0.2)
    regions = plan_regions(speech, duration=t, count=2)
    assert regions[0][0] == 0.0
    assert regions[-1][1] == t
    assert len(regions) == 2
    assert regions[0][1] == pytest.approx(speech[3][1] + 0.5)  # the middle of the 1 s pause
    assert regions[0][1] == regions[1][0]


def test_a_cut_in_a_long_silence_falls_just_before_the_speech_resumes() -> None:
    # Two talks of 30 s apart by 40 s of silence: the next region starts 1 s before
    # its speech, not in the middle of the silence.
    speech = [(float(t), t + 4.5) for t in range(0, 30, 5)]
    speech += [(float(t), t + 4.5) for t in range(70, 100, 5)]
    regions = plan_regions(speech, 100.0, count=2)
    assert regions == [(0.0, 70.0 - LEAD_IN_SECONDS), (70.0 - LEAD_IN_SECONDS, 100.0)]


def test_regions_are_fewer_when_there_are_fewer_pauses_and_one_below_two() -> None:
    speech = [(0.0, 20.0), (21.0, 40.0)]
    assert len(plan_regions(speech, 41.0, 8)) == 2
    assert plan_regions(speech, 41.0, 1) == [(0.0, 41.0)]
    assert plan_regions([(0.0, 40.0)], 41.0, 4) == [(0.0, 41.0)]


def test_a_recording_that_fits_the_batch_gets_the_fewest_regions_of_a_window_each() -> None:
    # 127 s of dense speech: 5 s spans, 0.4 s pauses.
    speech, t = [], 0.0
    while t < 125.0:
        speech.append((t, t + 5.0))
        t += 5.4
    regions = plan_window_regions(speech, 127.0, most=8)
    assert regions is not None
    assert len(regions) == 5  # 127 s needs five windows
    assert all(end - start <= WINDOW_SECONDS for start, end in regions)
    assert regions[0][0] == 0.0
    assert regions[-1][1] == 127.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(regions))
    # Each cut in the middle of a pause.
    pauses = [(a[1] + b[0]) / 2 for a, b in itertools.pairwise(speech)]
    assert all(min(abs(cut - p) for p in pauses) < 1e-9 for _, cut in regions[:-1])
    assert plan_window_regions(speech, 127.0, most=4) is None  # more than the batch


def test_speech_apart_by_long_silence_gets_no_regions_of_a_window_each() -> None:
    # 20 s of talk, 60 s of silence, 20 s of talk: shares of speech cannot fit a
    # window each, and regions of silence alone are not decoded as windows.
    speech = [(float(t), t + 4.0) for t in range(0, 20, 5)]
    speech += [(float(t), t + 4.0) for t in range(80, 100, 5)]
    assert plan_window_regions(speech, 100.0, most=8) is None


def test_a_segment_is_cut_at_its_regions_end_and_one_past_it_dropped() -> None:
    words = [Word(20.0, 21.0, " so", 0.9), Word(21.0, 23.5, " long", 0.8),
             Word(23.6, 24.0, " bye", 0.2)]  # fmt: skip
    inside = replace(segment(20.0, 24.0, " so long bye"), words=words)
    cut = clipped(inside, 23.0)
    assert cut is not None
    assert cut.end == 23.0
    assert cut.words == [words[0], replace(words[1], end=23.0)]
    assert clipped(segment(10.0, 12.0, " kept"), 23.0) == segment(10.0, 12.0, " kept")
    assert clipped(segment(23.0, 25.0, " thank you"), 23.0) is None


def test_previous_text_is_cut_to_its_latest_tokens() -> None:
    sot, prev = 50258, 50361
    task = [sot, 50363]
    long = [prev, *range(1, 101), *task]
    assert _cut_context(long, sot, 48) == [prev, *range(53, 101), *task]
    short = [prev, *range(1, 11), *task]
    assert _cut_context(short, sot, 48) == short
    assert _cut_context(task, sot, 48) == task  # no previous text


def test_segments_move_onto_the_recording_timeline() -> None:
    moved = on_timeline([segment(1.0, 2.0, " a", seek=100)], 30.0)
    assert (moved[0].start, moved[0].end, moved[0].seek) == (31.0, 32.0, 3100)


class Regions:
    """A region decoder whose regions finish in an order the test chooses (all at once
    when ``released``); ``observe`` notes something of each call in ``seen``."""

    def __init__(
        self,
        count: int,
        *,
        released: bool = False,
        observe: Callable[[TranscribeOptions], object] | None = None,
    ) -> None:
        self.release = [threading.Event() for _ in range(count)]
        if released:
            for event in self.release:
                event.set()
        self.fail: dict[int, BaseException] = {}
        self.observe = observe
        self.seen: list[object] = []

    def decode(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        token: CancelToken,
        emit: SegmentCallback | None,
    ) -> Transcription:
        index = round(len(samples) / SAMPLE_RATE) // 10 - 1  # region i is (i+1)*10 s long
        if self.observe is not None:
            self.seen.append(self.observe(options))
        duration = len(samples) / SAMPLE_RATE
        parts = [
            segment(0.0, duration / 2, f" r{index}a"),
            segment(duration / 2, duration, f" r{index}b"),
        ]
        if emit is not None:
            emit(parts[0])
        while not self.release[index].wait(0.01):
            token.check()
        if index in self.fail:
            raise self.fail[index]
        if emit is not None:
            emit(parts[1])
        return Transcription("", options.language or "en", 1.0, duration, parts)


def regions_of(count: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    edges = [0.0]
    for index in range(count):
        edges.append(edges[-1] + (index + 1) * 10)
    audio = np.zeros(int(edges[-1] * SAMPLE_RATE), dtype=np.float32)
    return audio, list(itertools.pairwise(edges))


def test_segments_are_handed_on_in_order_when_later_regions_finish_first() -> None:
    audio, regions = regions_of(3)
    decoder = Regions(3)
    seen: list[Segment] = []
    done = threading.Thread(
        target=lambda: seen.append(  # type: ignore[func-returns-value]
            decode_regions(
                decoder.decode, audio, regions, OPTIONS, CancelToken(), seen.append, None
            )
        )
    )
    done.start()
    decoder.release[2].set()
    decoder.release[1].set()
    threading.Event().wait(0.2)
    # Region 0 is still decoding: only its first segment has gone out.
    assert [s.text for s in seen] == [" r0a"]
    decoder.release[0].set()
    done.join(5)
    result = seen.pop()
    assert isinstance(result, Transcription)
    texts = [s.text for s in seen]
    assert texts == [" r0a", " r0b", " r1a", " r1b", " r2a", " r2b"]
    assert [s.id for s in seen] == list(range(6))
    assert [s.text for s in result.segments] == texts
    assert [s.start for s in result.segments] == [0.0, 5.0, 10.0, 20.0, 30.0, 45.0]
    assert result.text == "r0a r0b r1a r1b r2a r2b"
    assert result.duration == 60.0


def test_a_failing_region_stops_the_others_and_its_error_is_raised() -> None:
    audio, regions = regions_of(3)
    decoder = Regions(3)
    decoder.fail[1] = RuntimeError("the model broke")
    decoder.release[1].set()  # region 1 fails; 0 and 2 wait until stopped
    with pytest.raises(RuntimeError, match="the model broke"):
        decode_regions(decoder.decode, audio, regions, OPTIONS, CancelToken(), None, None)


def test_the_requests_own_reason_stops_every_region() -> None:
    audio, regions = regions_of(2)
    decoder = Regions(2)
    token = CancelToken()
    threading.Timer(0.1, token.cancel, ("client_disconnected",)).start()
    with pytest.raises(Cancelled) as stopped:
        decode_regions(decoder.decode, audio, regions, OPTIONS, token, None, None)
    assert stopped.value.reason == "client_disconnected"


def test_a_language_detected_once_is_every_regions() -> None:
    audio, regions = regions_of(2)
    decoder = Regions(2, released=True, observe=lambda options: options.language)
    result = decode_regions(
        decoder.decode,
        audio,
        regions,
        TranscribeOptions(),
        None,
        None,
        lambda _: [("de", 0.8), ("en", 0.2)],
    )
    assert decoder.seen == ["de", "de"]
    assert (result.language, result.language_probability) == ("de", 0.8)


def test_long_speech_is_cut_in_its_pauses_and_short_audio_is_not() -> None:
    class Batching(FakeEngine):
        concurrent_regions = 8

    audio = decode_audio(AUDIO / LONG_AUDIO, max_seconds=600).samples
    engine = Batching()
    assert regions_for(engine, audio[: 59 * SAMPLE_RATE], OPTIONS, 60.0) is None
    assert regions_for(engine, audio, OPTIONS, None) is None
    assert regions_for(FakeEngine(), audio, OPTIONS, 60.0) is None  # cannot batch
    regions = regions_for(engine, audio, OPTIONS, 60.0)
    assert regions is not None
    duration = len(audio) / SAMPLE_RATE
    # Two minutes fit the batch: the fewest regions of at most one window each.
    assert len(regions) == math.ceil(duration / WINDOW_SECONDS)
    assert all(end - start <= WINDOW_SECONDS for start, end in regions)
    assert regions[0][0] == 0.0
    assert regions[-1][1] == duration
    assert all(a[1] == b[0] for a, b in itertools.pairwise(regions))
    # Each cut falls where there is no speech: the 100 ms around it are quiet.
    for _, cut in regions[:-1]:
        around = audio[int((cut - 0.05) * SAMPLE_RATE) : int((cut + 0.05) * SAMPLE_RATE)]
        loud = np.sqrt(np.mean(audio**2))
        assert np.sqrt(np.mean(around**2)) < loud / 4, cut

    class Pair(FakeEngine):
        concurrent_regions = 2

    # More windows than the batch: as many regions as it holds, equal in speech.
    pair = regions_for(Pair(), audio, OPTIONS, 60.0)
    assert pair is not None
    assert len(pair) == 2
    assert all(end - start >= MIN_REGION_SPEECH_SECONDS for start, end in pair)


def test_speech_too_uneven_for_regions_is_decoded_window_after_window() -> None:
    # Six AMI meeting excerpts one after another: a minute of silence, most of the
    # speech at the end; the plan's longest region would hold 136 of 180 s.
    class Batching(FakeEngine):
        concurrent_regions = 8

    meeting = np.concatenate([excerpt.samples for excerpt in ami_excerpts()[:6]])
    assert regions_for(Batching(), meeting, OPTIONS, 60.0) is None


def test_every_region_runs_in_the_requests_context() -> None:
    audio, regions = regions_of(3)
    decoder = Regions(3, released=True, observe=lambda _options: request_id_var.get())
    reset = request_id_var.set("req-regions")
    try:
        decode_regions(decoder.decode, audio, regions, OPTIONS, None, None, None)
    finally:
        request_id_var.reset(reset)
    assert decoder.seen == ["req-regions"] * 3
