"""A long recording decoded as regions at once.

Whisper decodes 30 s windows one after the other, each conditioned on the text before
it; on a long recording an idle worker then spends minutes one window at a time. Cut
at pauses into regions, the recording is decoded by the same algorithm in each region
(windows, seeks, timestamps, temperature fallback) on one thread per region, and the
regions' model calls join the same batches (engines/batching.py): a lone long request
fills the batch that would otherwise be idle.

Segments come back on the recording's timeline, numbered in order, and are handed on
in order: a region's segments wait until the regions before it have finished.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines.base import (
    Cancelled,
    CancelToken,
    Segment,
    SegmentCallback,
    TranscribeOptions,
    Transcription,
)
from whisper_service.engines.speech import WINDOW_SECONDS

# Whisper's seek counts mel frames: 100 per second.
FRAMES_PER_SECOND = 100

# A region starts at most this long before its first speech: cut in the middle of a
# long silence, a region's first window held mostly silence and Whisper, with no text
# before it, ran the temperature fallback up to 1.0 and wrote sentences never said
# (six AMI meeting excerpts: WER 37 % against 14 % sequentially).
LEAD_IN_SECONDS = 1.0
# (start, end) seconds of a region.
Region = tuple[float, float]
# Transcribes one region's audio (the engine's ordinary sequential path).
RegionDecoder = Callable[
    [np.ndarray, TranscribeOptions, CancelToken, SegmentCallback | None], Transcription
]
# A multilingual model's language probabilities for audio, most likely first.
LanguageDetector = Callable[[np.ndarray], list[tuple[str, float]]]
# Why the other regions stop when one fails (its own error is the one raised).
REGION_FAILED = "region_failed"


def plan_regions(speech: Sequence[Region], duration: float, count: int) -> list[Region]:
    """At most ``count`` regions that tile ``[0, duration]``, cut in pauses between the
    ``speech`` spans (in order): near each equal share of the speech, the longest
    pause within a quarter of a share, else the nearest. The regions touch, so no
    audio is left out."""
    if count < 2 or len(speech) < 2:
        return [(0.0, duration)]
    # Each pause: its length, its middle, and the speech before it.
    pauses, spoken = [], 0.0
    for before, after in itertools.pairwise(speech):
        spoken += before[1] - before[0]
        cut = max((before[1] + after[0]) / 2, after[0] - LEAD_IN_SECONDS)
        pauses.append((after[0] - before[1], cut, spoken))
    share = (spoken + speech[-1][1] - speech[-1][0]) / count
    cuts: list[float] = []
    for k in range(1, count):
        near = [p for p in pauses if abs(p[2] - share * k) <= share / 4]
        _, middle, _ = max(near) if near else min(pauses, key=lambda p: abs(p[2] - share * k))
        if (not cuts or middle > cuts[-1]) and 0.0 < middle < duration:
            cuts.append(middle)
    edges = [0.0, *cuts, duration]
    return list(itertools.pairwise(edges))


def plan_window_regions(
    speech: Sequence[Region], duration: float, most: int
) -> list[Region] | None:
    """The fewest regions, at most ``most``, cut as ``plan_regions`` cuts, that each
    fit in one window: each is then one encoder pass and one decoder call, all in
    one batch. None when there are none: the recording is too long, or its speech
    too uneven (shares of speech apart by long silences), where regions of silence
    would be decoded alone, hallucinating through the temperature fallback (six AMI
    meeting excerpts, 180 s: 2.0 times the sequential time, twice its word error
    rate)."""
    for count in range(max(2, math.ceil(duration / WINDOW_SECONDS)), most + 1):
        regions = plan_regions(speech, duration, count)
        if all(end - start <= WINDOW_SECONDS for start, end in regions):
            return regions
    return None


class _LinkedToken(CancelToken):
    """A region's token: stopped with the request's, or when another region failed."""

    def __init__(self, parent: CancelToken) -> None:
        super().__init__(deadline=parent.deadline)
        self._parent = parent

    def check(self) -> None:
        """Raise Cancelled if the request or this set of regions was stopped."""
        self._parent.check()
        super().check()


class _InOrder:
    """Hands segments on in the recording's order while regions decode at once: the
    first unfinished region's segments at once, later regions' when it finishes."""

    def __init__(self, regions: Sequence[Region], on_segment: SegmentCallback) -> None:
        self._regions = regions
        self._on_segment = on_segment
        self._waiting: list[list[Segment]] = [[] for _ in regions]
        self._finished = [False] * len(regions)
        self._current = 0
        self._next_id = 0
        self._lock = threading.Lock()

    def segment(self, index: int, segment: Segment) -> None:
        """A segment of region ``index``, on the region's own timeline."""
        with self._lock:
            if index == self._current:
                self._emit(index, segment)
            else:
                self._waiting[index].append(segment)

    def finished(self, index: int) -> None:
        """Region ``index`` has no more segments."""
        with self._lock:
            self._finished[index] = True
            while self._current < len(self._finished) and self._finished[self._current]:
                self._current += 1
                if self._current < len(self._finished):
                    for segment in self._waiting[self._current]:
                        self._emit(self._current, segment)
                    self._waiting[self._current] = []

    def _emit(self, index: int, segment: Segment) -> None:
        moved = on_timeline([segment], self._regions[index][0])[0]
        self._on_segment(replace(moved, id=self._next_id))
        self._next_id += 1


def decode_regions(
    decode: RegionDecoder,
    audio: np.ndarray,
    regions: Sequence[Region],
    options: TranscribeOptions,
    cancel: CancelToken | None,
    on_segment: SegmentCallback | None,
    detect: LanguageDetector | None,
) -> Transcription:
    """Each region of ``audio`` decoded on its own thread by ``decode``; one
    transcription on the recording's timeline. When the options leave the language
    open, ``detect`` (a multilingual model's; None for an English-only one) finds it
    once, on the first 30 s as the sequential path would, for every region (each
    would otherwise detect its own)."""
    language = None
    if options.language is None and detect is not None:
        language = detect(audio)[0]
        options = replace(options, language=language[0])
    token = _LinkedToken(cancel or CancelToken())
    ordered = None if on_segment is None else _InOrder(regions, on_segment)

    def one(index: int) -> Transcription:
        start, end = regions[index]
        samples = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        emit = None if ordered is None else (lambda s: ordered.segment(index, s))
        try:
            return decode(samples, options, token, emit)
        except BaseException:
            token.cancel(REGION_FAILED)  # the others stop at their next check
            raise
        finally:
            if ordered is not None:
                ordered.finished(index)

    with ThreadPoolExecutor(len(regions), thread_name_prefix="region") as pool:
        # Each region's thread sees the request's context (its log fields, its span).
        futures = [
            pool.submit(contextvars.copy_context().run, one, index) for index in range(len(regions))
        ]
        errors = [future.exception() for future in futures]
    # The first region's own error (the deadline, a client gone, a fault), not the
    # stop it caused in the others.
    for error in errors:
        if error is not None and not (
            isinstance(error, Cancelled) and error.reason == REGION_FAILED
        ):
            raise error
    results = [future.result() for future in futures]
    segments = [
        moved
        for (start, _), result in zip(regions, results, strict=True)
        for moved in on_timeline(result.segments, start)
    ]
    segments = [replace(segment, id=index) for index, segment in enumerate(segments)]
    first = results[0]
    probability = language[1] if language is not None else first.language_probability
    return Transcription(
        "".join(s.text for s in segments).strip(),
        first.language,
        probability,
        len(audio) / SAMPLE_RATE,
        segments,
    )


def clipped(segment: Segment, seconds: float) -> Segment | None:
    """``segment`` cut to end by ``seconds`` (its words too), or None when it starts
    there or later: a region decoded with silence after its end (see the engine)
    keeps nothing Whisper placed in that silence."""
    if segment.start >= seconds:
        return None
    words = segment.words
    if words is not None:
        words = [replace(w, end=min(w.end, seconds)) for w in words if w.start < seconds]
    return replace(segment, end=min(segment.end, seconds), words=words)


def on_timeline(
    segments: Sequence[Segment], offset: float, speaker: str | None = None
) -> list[Segment]:
    """Segments of a piece of a recording moved onto the recording's timeline (with a
    speaker for all of them, when given)."""
    moved = []
    for segment in segments:
        words = None
        if segment.words is not None:
            words = [replace(w, start=w.start + offset, end=w.end + offset,
                             speaker=speaker or w.speaker)
                     for w in segment.words]  # fmt: skip
        moved.append(replace(segment, start=segment.start + offset, end=segment.end + offset,
                             seek=segment.seek + round(offset * FRAMES_PER_SECOND),
                             words=words, speaker=speaker or segment.speaker))  # fmt: skip
    return moved
