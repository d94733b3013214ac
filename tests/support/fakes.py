"""A stand-in engine for tests of HTTP behaviour (errors, limits, formats, auth,
overload, deadlines, health): fast, deterministic, controllable. Tests that claim
transcription works use a real model instead."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.config import Settings
from whisper_service.engines import (
    CancelToken,
    Segment,
    SegmentCallback,
    TranscribeOptions,
    Transcription,
    Word,
    check_options,
    require_multilingual,
)
from whisper_service.engines.regions import decode_regions
from whisper_service.models import ModelArtifact, ModelFormat
from whisper_service.serving.startup import EngineLoader, LoadedModel

DEFAULT_LINES = ("The quick brown fox", "jumps over the lazy dog.")


class FakeEngine:
    """Splits the audio evenly into one segment per line of ``lines``; words get even
    timings. ``hold`` (an Event) keeps every call waiting until it is set; ``busy``
    makes every call take that many seconds. Both check the cancel token as a real
    engine does, so deadlines, disconnects and the drain stop them."""

    name = "fake"

    def __init__(
        self,
        *,
        model_name: str = "fake.en",
        multilingual: bool = False,
        lines: Sequence[str] = DEFAULT_LINES,
        language: str = "en",
        busy: float = 0.0,
        hold: threading.Event | None = None,
    ) -> None:
        self.model_name = model_name
        self._multilingual = multilingual
        self.lines = list(lines)
        self.language = language
        self.busy = busy
        self.hold = hold
        self.calls = 0
        self.last_options: TranscribeOptions | None = None
        self.started = threading.Event()

    @property
    def multilingual(self) -> bool:
        """Whether the stand-in claims languages other than English."""
        return self._multilingual

    def _work(self, cancel: CancelToken | None) -> None:
        self.calls += 1
        self.started.set()
        self._wait(cancel)

    def _wait(self, cancel: CancelToken | None) -> None:
        give_up = time.monotonic() + self.busy
        while (self.hold is not None and not self.hold.is_set()) or time.monotonic() < give_up:
            if cancel is not None:
                cancel.check()
            time.sleep(0.005)

    def _segments(self, start: float, end: float, words: bool) -> list[Segment]:
        span = (end - start) / len(self.lines)
        segments = []
        for i, line in enumerate(self.lines):
            s0 = start + i * span
            tokens = line.split()
            step = span / max(1, len(tokens))
            segment_words = [
                Word(s0 + j * step, s0 + (j + 1) * step, f" {t}", 0.9) for j, t in enumerate(tokens)
            ]
            segments.append(
                Segment(
                    id=i,
                    seek=0,
                    start=s0,
                    end=s0 + span,
                    text=f" {line}",
                    tokens=list(range(len(tokens))),
                    temperature=0.0,
                    avg_logprob=-0.2,
                    compression_ratio=1.2,
                    no_speech_prob=0.01,
                    words=segment_words if words else None,
                )
            )
        return segments

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """The lines, spread over the audio; ``busy`` and ``hold`` apply before each
        segment, as a real engine spends its time per window."""
        check_options(self, options)
        self.calls += 1
        self.last_options = options
        self.started.set()
        duration = len(audio) / SAMPLE_RATE
        segments = self._segments(0.0, duration, options.word_timestamps)
        for segment in segments:
            self._wait(cancel)
            if on_segment is not None:
                on_segment(segment)
        text = "".join(s.text for s in segments).strip()
        return Transcription(text, options.language or self.language, 0.99, duration, segments)

    # Regions at once would only take turns: long audio is one call, as ever.
    concurrent_regions = 1

    def transcribe_regions(
        self,
        audio: np.ndarray,
        regions: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """The lines in each region, joined on the audio's timeline."""
        detect = self.detect_language if self.multilingual else None
        return decode_regions(self.transcribe, audio, regions, options, cancel, on_segment, detect)

    def transcribe_windows(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        """The lines once per window, on the audio's timeline."""
        check_options(self, options)
        self._work(cancel)
        segments = [
            s for start, end in windows for s in self._segments(start, end, options.word_timestamps)
        ]
        text = "".join(s.text for s in segments).strip()
        covered = sum(end - start for start, end in windows)
        return Transcription(text, options.language or self.language, 0.99, covered, segments)

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """The configured language, sure of itself."""
        require_multilingual(self)
        return [(self.language, 0.9), ("de", 0.05), ("fr", 0.05)]


def loader(engine: FakeEngine) -> EngineLoader:
    """An engine loader for create_app that hands out ``engine``."""
    artifact = ModelArtifact(
        engine.model_name, ModelFormat.CTRANSLATE2, Path("/nonexistent"), "fake"
    )

    def load(settings: Settings) -> LoadedModel:
        return LoadedModel(artifact, engine, 0.0)

    return load
