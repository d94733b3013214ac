"""Where the speech is in a recording: windows of at most 30 s (Whisper's input
length) as (start, end) seconds.

``vad``: Silero VAD (shipped with faster-whisper) finds speech; consecutive speech
regions are merged into windows up to the limit, so cuts fall in pauses and silence
is never transcribed. ``fixed``: back-to-back windows; a cut may fall inside a word.
Jobs cut recordings into windows with it (jobs/chunking.py), and a long request finds
its pauses with it (long_audio.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from whisper_service.audio import SAMPLE_RATE

# (start, end) seconds.
Span = tuple[float, float]

WINDOW_SECONDS = 30.0
# Silero VAD over the whole of a long recording holds several arrays its size at once
# (measured: 1.2 GB more for 2 h); over 2-minute slices, 120 MB more per slice in flight.
VAD_SLICE_SECONDS = 120.0
# Slices no shorter than this: Silero starts each slice afresh.
MIN_VAD_SLICE_SECONDS = 30.0
# Slices in VAD at once, each holding its own arrays (about 120 MB for 2 minutes).
VAD_THREADS = 4
# Shorter than this carries no word worth a decoder pass.
MIN_WINDOW_SECONDS = 0.2
# Silero's padding around speech (faster-whisper's default), so words' edges stay in.
SPEECH_PAD_MS = 400


def plan_spans(
    audio: np.ndarray,
    mode: Literal["vad", "fixed"],
    max_seconds: float = WINDOW_SECONDS,
    speech_pad_ms: int = SPEECH_PAD_MS,
) -> list[Span]:
    """The (start, end) windows to transcribe, in order."""
    return [w for ready in final_spans(audio, mode, max_seconds, speech_pad_ms) for w in ready]


def final_spans(
    audio: np.ndarray,
    mode: Literal["vad", "fixed"],
    max_seconds: float = WINDOW_SECONDS,
    speech_pad_ms: int = SPEECH_PAD_MS,
) -> Iterator[list[Span]]:
    """The windows in order, in groups as they become final: with ``vad``, one group per
    slice (2 minutes; shorter audio, one slice per CPU), so a job can publish its
    first units while VAD goes on. Speech is padded by ``speech_pad_ms`` on each side
    (pauses shorter than twice that leave no gap between windows)."""
    if mode == "fixed":
        duration = len(audio) / SAMPLE_RATE
        starts = np.arange(0.0, duration, max_seconds)
        yield _kept([(float(s), float(min(s + max_seconds, duration))) for s in starts])
        return
    yield from _speech_windows(audio, max_seconds, speech_pad_ms)


def _kept(windows: list[Span]) -> list[Span]:
    return [(start, end) for start, end in windows if end - start >= MIN_WINDOW_SECONDS]


def _speech_windows(
    audio: np.ndarray, max_seconds: float, speech_pad_ms: int
) -> Iterator[list[Span]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # The same VAD settings faster-whisper's batched pipeline uses: no speech region
    # longer than a window, pauses of 160 ms are enough to cut at.
    options = VadOptions(
        max_speech_duration_s=max_seconds,
        min_silence_duration_ms=160,
        speech_pad_ms=speech_pad_ms,
    )
    threads = min(VAD_THREADS, len(os.sched_getaffinity(0)))
    # A recording of a few minutes is cut into one slice per CPU (one Silero call runs
    # on one core): a long request waits for its pauses before it decodes a word.
    seconds = max(MIN_VAD_SLICE_SECONDS, len(audio) / SAMPLE_RATE / threads)
    step = int(min(VAD_SLICE_SECONDS, seconds) * SAMPLE_RATE)
    offsets = range(0, len(audio), step)

    def speech(offset: int) -> list[dict[str, int]]:
        found: list[dict[str, int]] = get_speech_timestamps(audio[offset : offset + step], options)
        return found

    # Slices are independent (the model keeps no state between calls) and planning is
    # the serial part of a job: run them on every CPU (onnxruntime releases the GIL);
    # map() hands the results back in order as they complete.
    open_windows: list[Span] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for offset, found in zip(offsets, pool.map(speech, offsets), strict=True):
            # A region cut by a slice boundary comes back as two touching ones; they
            # join again below unless the window is full there.
            for region in found:
                start, end = (
                    (offset + region["start"]) / SAMPLE_RATE,
                    (offset + region["end"]) / SAMPLE_RATE,
                )
                if open_windows and end - open_windows[-1][0] <= max_seconds:
                    open_windows[-1] = (open_windows[-1][0], end)
                else:
                    open_windows.append((start, min(end, start + max_seconds)))
            # Regions still to come start at or after this slice's end: only the last
            # window can still grow, and only while its start is within reach.
            reached = (offset + step) / SAMPLE_RATE
            keep = 1 if open_windows and open_windows[-1][0] + max_seconds > reached else 0
            ready, open_windows = (
                open_windows[: len(open_windows) - keep],
                open_windows[len(open_windows) - keep :],
            )
            yield _kept(ready)
    yield _kept(open_windows)
