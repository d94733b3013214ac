"""Cutting long audio into windows of at most 30 s (Whisper's input length).

``vad``: Silero VAD (shipped with faster-whisper) finds speech; consecutive speech
regions are merged into windows up to the limit, so cuts fall in pauses and silence
is never transcribed. ``fixed``: back-to-back windows; a cut may fall inside a word.
Either way the windows keep their place in the audio, so every timestamp a window
produces is offset to the original timeline and the transcript's times run on
continuously across windows.

Windows are then grouped into units, the pieces one queue message carries, so that
several instances can work on one recording at once; a unit's size follows the
real-time factor the instance measures (``RealtimeFactor``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.jobs.records import Unit, Window

WINDOW_SECONDS = 30.0
# Silero VAD over the whole of a long recording holds several arrays its size at once
# (measured: 1.2 GB more for 2 h); over 2-minute slices, 120 MB more per slice in flight.
VAD_SLICE_SECONDS = 120.0
# Slices in VAD at once, each holding its own arrays (about 120 MB for 2 minutes).
VAD_THREADS = 4
# Shorter than this carries no word worth a decoder pass.
MIN_WINDOW_SECONDS = 0.2
# Silero's padding around speech (faster-whisper's default), so words' edges stay in.
SPEECH_PAD_MS = 400


def plan_windows(
    audio: np.ndarray,
    mode: Literal["vad", "fixed"],
    max_seconds: float = WINDOW_SECONDS,
    speech_pad_ms: int = SPEECH_PAD_MS,
) -> list[Window]:
    """The windows to transcribe, in order."""
    return [w for ready in final_windows(audio, mode, max_seconds, speech_pad_ms) for w in ready]


def final_windows(
    audio: np.ndarray,
    mode: Literal["vad", "fixed"],
    max_seconds: float = WINDOW_SECONDS,
    speech_pad_ms: int = SPEECH_PAD_MS,
) -> Iterator[list[Window]]:
    """The windows in order, in groups as they become final: with ``vad``, one group per
    2-minute slice, so a job can publish its first units while VAD goes on. Speech is
    padded by ``speech_pad_ms`` on each side (pauses shorter than twice that leave no
    gap between windows)."""
    if mode == "fixed":
        duration = len(audio) / SAMPLE_RATE
        starts = np.arange(0.0, duration, max_seconds)
        yield _kept([Window(start=float(s), end=float(min(s + max_seconds, duration)))
                     for s in starts])  # fmt: skip
        return
    yield from _speech_windows(audio, max_seconds, speech_pad_ms)


def _kept(windows: list[Window]) -> list[Window]:
    return [w for w in windows if w.end - w.start >= MIN_WINDOW_SECONDS]


def _speech_windows(
    audio: np.ndarray, max_seconds: float, speech_pad_ms: int
) -> Iterator[list[Window]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # The same VAD settings faster-whisper's batched pipeline uses: no speech region
    # longer than a window, pauses of 160 ms are enough to cut at.
    options = VadOptions(
        max_speech_duration_s=max_seconds,
        min_silence_duration_ms=160,
        speech_pad_ms=speech_pad_ms,
    )
    step = int(VAD_SLICE_SECONDS * SAMPLE_RATE)
    offsets = range(0, len(audio), step)

    def speech(offset: int) -> list[dict[str, int]]:
        found: list[dict[str, int]] = get_speech_timestamps(audio[offset : offset + step], options)
        return found

    # Slices are independent (the model keeps no state between calls) and planning is
    # the serial part of a job: run them on every CPU (onnxruntime releases the GIL);
    # map() hands the results back in order as they complete.
    open_windows: list[Window] = []
    with ThreadPoolExecutor(max_workers=min(VAD_THREADS, len(os.sched_getaffinity(0)))) as pool:
        for offset, found in zip(offsets, pool.map(speech, offsets), strict=True):
            # A region cut by a slice boundary comes back as two touching ones; they
            # join again below unless the window is full there.
            for region in found:
                start, end = (
                    (offset + region["start"]) / SAMPLE_RATE,
                    (offset + region["end"]) / SAMPLE_RATE,
                )
                if open_windows and end - open_windows[-1].start <= max_seconds:
                    open_windows[-1] = Window(start=open_windows[-1].start, end=end)
                else:
                    open_windows.append(Window(start=start, end=min(end, start + max_seconds)))
            # Regions still to come start at or after this slice's end: only the last
            # window can still grow, and only while its start is within reach.
            reached = (offset + step) / SAMPLE_RATE
            keep = 1 if open_windows and open_windows[-1].start + max_seconds > reached else 0
            ready, open_windows = (
                open_windows[: len(open_windows) - keep],
                open_windows[len(open_windows) - keep :],
            )
            yield _kept(ready)
    yield _kept(open_windows)


class UnitGrouper:
    """Consecutive windows grouped into units spanning at most ``max_seconds`` of the
    recording (a window longer than that is a unit of its own), a unit handed out as
    soon as the next window does not fit in it."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._open: Unit | None = None

    def add(self, window: Window) -> Unit | None:
        """Take the next window; the unit it closed, if any."""
        current = self._open
        if current is not None and window.end - current.start <= self.max_seconds:
            self._open = Unit(start=current.start, end=window.end,
                              windows=[*current.windows, window])  # fmt: skip
            return None
        self._open = Unit(start=window.start, end=window.end, windows=[window])
        return current

    def finish(self) -> Unit | None:
        """The last unit, once every window has been added."""
        last, self._open = self._open, None
        return last


def plan_units(windows: list[Window], max_seconds: float) -> list[Unit]:
    """All of ``windows`` grouped into units (see UnitGrouper)."""
    grouper = UnitGrouper(max_seconds)
    units = [u for u in map(grouper.add, windows) if u is not None]
    last = grouper.finish()
    return [*units, last] if last is not None else units


@dataclass
class RealtimeFactor:
    """Inference seconds per second of audio on this instance, smoothed over batches;
    until measured, assume real time (units then hold ``WHISPER_JOBS_UNIT_SECONDS``
    of audio, so a slow first guess errs towards small units)."""

    value: float = 1.0
    measured: bool = field(default=False)

    def observe(self, seconds: float, audio_seconds: float) -> None:
        """Fold in one batch."""
        if audio_seconds <= 0:
            return
        sample = seconds / audio_seconds
        self.value = sample if not self.measured else 0.7 * self.value + 0.3 * sample
        self.measured = True
