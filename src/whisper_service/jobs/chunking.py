"""Cutting long audio into windows of at most 30 s (Whisper's input length).

``vad``: Silero VAD (shipped with faster-whisper) finds speech; consecutive speech
regions are merged into windows up to the limit, so cuts fall in pauses and silence
is never transcribed. ``fixed``: back-to-back windows; a cut may fall inside a word.
Either way the windows keep their place in the audio, so every timestamp a window
produces is offset to the original timeline and the transcript's times run on
continuously across windows.

Windows are then grouped into units, the pieces one queue message carries, so that
several instances can work on one recording at once.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


def plan_windows(
    audio: np.ndarray, mode: Literal["vad", "fixed"], max_seconds: float = WINDOW_SECONDS
) -> list[Window]:
    """The windows to transcribe, in order."""
    duration = len(audio) / SAMPLE_RATE
    if mode == "fixed":
        starts = np.arange(0.0, duration, max_seconds)
        windows = [
            Window(start=float(s), end=float(min(s + max_seconds, duration))) for s in starts
        ]
    else:
        windows = _speech_windows(audio, max_seconds)
    return [w for w in windows if w.end - w.start >= MIN_WINDOW_SECONDS]


def _speech_windows(audio: np.ndarray, max_seconds: float) -> list[Window]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # The same VAD settings faster-whisper's batched pipeline uses: no speech region
    # longer than a window, pauses of 160 ms are enough to cut at.
    options = VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=160)
    step = int(VAD_SLICE_SECONDS * SAMPLE_RATE)
    offsets = range(0, len(audio), step)

    def speech(offset: int) -> list[dict[str, int]]:
        found: list[dict[str, int]] = get_speech_timestamps(audio[offset : offset + step], options)
        return found

    # Slices are independent (the model keeps no state between calls) and planning is
    # the serial part of a job: run them on every CPU (onnxruntime releases the GIL).
    with ThreadPoolExecutor(max_workers=min(VAD_THREADS, len(os.sched_getaffinity(0)))) as pool:
        per_slice = list(pool.map(speech, offsets))
    regions = []
    for offset, found in zip(offsets, per_slice, strict=True):
        # A region cut by a slice boundary comes back as two touching ones; the windows
        # below join them again unless a window is full there.
        for region in found:
            regions.append((offset + region["start"], offset + region["end"]))
    windows: list[Window] = []
    for first, last in regions:
        start, end = first / SAMPLE_RATE, last / SAMPLE_RATE
        if windows and end - windows[-1].start <= max_seconds:
            windows[-1] = Window(start=windows[-1].start, end=end)
        else:
            windows.append(Window(start=start, end=min(end, start + max_seconds)))
    return windows


def plan_units(windows: list[Window], max_seconds: float) -> list[Unit]:
    """Consecutive windows grouped into units spanning at most ``max_seconds`` of the
    recording (a window longer than that is a unit of its own)."""
    units: list[Unit] = []
    for window in windows:
        if units and window.end - units[-1].start <= max_seconds:
            last = units[-1]
            units[-1] = Unit(start=last.start, end=window.end, windows=[*last.windows, window])
        else:
            units.append(Unit(start=window.start, end=window.end, windows=[window]))
    return units
