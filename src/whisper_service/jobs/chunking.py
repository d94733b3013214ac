"""Cutting long audio into windows of at most 30 s (Whisper's input length), as
``engines/speech.py`` finds them (``vad``: at pauses, silence left out; ``fixed``:
back to back). Either way the windows keep their place in the audio, so every timestamp a window
produces is offset to the original timeline and the transcript's times run on
continuously across windows.

Windows are then grouped into units, the pieces one queue message carries, so that
several instances can work on one recording at once; a unit's size follows the
real-time factor the instance measures (``RealtimeFactor``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from whisper_service.engines import speech
from whisper_service.jobs.records import Unit, Window

WINDOW_SECONDS = speech.WINDOW_SECONDS


def plan_windows(
    audio: np.ndarray, mode: Literal["vad", "fixed"], max_seconds: float = WINDOW_SECONDS
) -> list[Window]:
    """The windows to transcribe, in order (``engines.speech.plan_spans``)."""
    return [w for ready in final_windows(audio, mode, max_seconds) for w in ready]


def final_windows(
    audio: np.ndarray, mode: Literal["vad", "fixed"], max_seconds: float = WINDOW_SECONDS
) -> Iterator[list[Window]]:
    """The windows in order, in groups as they become final: with ``vad``, one group per
    2-minute slice, so a job can publish its first units while VAD goes on."""
    for ready in speech.final_spans(audio, mode, max_seconds):
        yield [Window(start=start, end=end) for start, end in ready]


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
