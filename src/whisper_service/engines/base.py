"""The Engine protocol and the types every engine speaks.

Both backends take the same :class:`TranscribeOptions` and return the same
:class:`Transcription`, so the API, the formats and the tests never care which one
ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from whisper_service.errors import Refused, ServiceError

Task = Literal["transcribe", "translate"]

# Whisper's temperature fallback: decode greedily/with beams at 0, retry hotter when
# the output looks like a hallucination (compression ratio, log-prob thresholds).
FALLBACK_TEMPERATURES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class UnsupportedOption(ServiceError):
    """A valid option this model cannot honour (translate with an English-only model)."""

    status = 400
    code = "unsupported_option"

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)


class Cancelled(Refused):
    """Inference stopped early because its request was cancelled or ran out of time;
    ``reason`` says which (deadline_exceeded, shutting_down, client_disconnected...)."""


class CancelToken:
    """Shared between a request and the worker thread running its inference.

    Engines call :meth:`check` between decoding windows; the request side calls
    :meth:`cancel` (client gone) or sets a monotonic ``deadline``.
    """

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self._reason: str | None = None
        self._event = threading.Event()

    def cancel(self, reason: str) -> None:
        """Ask the running inference to stop at its next check."""
        self._reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Why cancel() was called, if it was."""
        return self._reason

    def check(self) -> None:
        """Raise Cancelled if cancelled or past the deadline."""
        if self._event.is_set():
            raise Cancelled(self._reason or "cancelled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Cancelled("deadline_exceeded")


@dataclass(frozen=True)
class VadSettings:
    """How Silero VAD finds speech when ``vad_filter`` is on: the speech probability
    that counts as speech, the silence that ends a region, the padding kept around it
    (faster-whisper's defaults)."""

    threshold: float = 0.5
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding options, identical for every engine."""

    language: str | None = None
    task: Task = "transcribe"
    beam_size: int = 5
    # None or 0 means Whisper's fallback schedule (as in OpenAI's API); >0 is fixed.
    temperature: float | None = None
    prompt: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = False
    vad: VadSettings = field(default_factory=VadSettings)
    # Text the audio is known to begin with (a live session's previous turn, decoded
    # again as left context): the decoder is forced through it and the result holds
    # only what follows, as one segment without timestamps. Audio of one window only.
    prefix: str | None = None
    # False: decode at the first temperature only, never again hotter (a live partial,
    # which the turn's final replaces, is not worth five sampled re-decodes).
    fallback: bool = True
    # Audio shorter than about 29 s encoded in a window fitted to it (its length and
    # 1 s of silence, in 5 s steps from 10 s) instead of Whisper's 30 s: much cheaper,
    # and Whisper's words change (measured on live partials, docs/benchmarks.md). An
    # engine that cannot (openai-whisper) encodes 30 s.
    fitted_window: bool = False

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The temperature schedule to decode with."""
        if not self.temperature:
            return FALLBACK_TEMPERATURES if self.fallback else FALLBACK_TEMPERATURES[:1]
        return (self.temperature,)


@dataclass(frozen=True)
class Word:
    """One word with its timing (seconds) and probability."""

    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None  # with diarization


@dataclass(frozen=True)
class Segment:
    """One decoded segment, in the shape openai-whisper returns."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None
    speaker: str | None = None  # with diarization


@dataclass(frozen=True)
class Transcription:
    """What any engine returns for one audio input."""

    text: str
    language: str
    language_probability: float
    duration: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def words(self) -> list[Word]:
        """Every word of every segment, in order (empty without word timestamps)."""
        return [w for s in self.segments for w in (s.words or [])]


# Called from the inference thread with each segment as it is decoded.
SegmentCallback = Callable[[Segment], None]


class Engine(Protocol):
    """A loaded Whisper model that can transcribe and detect languages.

    Implementations are safe to call from ``workers`` threads at once.
    """

    name: str
    model_name: str

    @property
    def multilingual(self) -> bool:
        """Whether the model knows languages other than English (and can translate)."""
        ...

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe 16 kHz mono float32 ``audio``; ``on_segment`` sees each segment
        as soon as it is decoded."""
        ...

    @property
    def concurrent_regions(self) -> int:
        """How many regions of one recording are worth decoding at once (1: none)."""
        ...

    def transcribe_regions(
        self,
        audio: np.ndarray,
        regions: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe the (start, end) regions that tile ``audio`` at once, each by the
        ordinary sequential algorithm; one transcription on ``audio``'s timeline, whose
        segments reach ``on_segment`` in order."""
        ...

    def transcribe_windows(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        """Transcribe only the (start, end) windows of ``audio`` (seconds, each at most
        30 s), batched where the engine can; timestamps stay on ``audio``'s timeline."""
        ...

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """Language codes with probabilities, most likely first (first 30 s)."""
        ...


def check_options(engine: Engine, options: TranscribeOptions) -> None:
    """Reject options the loaded model cannot honour, with the parameter at fault."""
    if engine.multilingual:
        return
    if options.task == "translate":
        raise UnsupportedOption(
            f"model {engine.model_name} is English-only and cannot translate; "
            "serve a multilingual model (e.g. WHISPER_MODEL=base)",
            "task",
        )
    if options.language not in (None, "en"):
        raise UnsupportedOption(
            f"model {engine.model_name} is English-only; language {options.language!r} "
            "needs a multilingual model",
            "language",
        )


# Whisper's window; a prefix applies to one window only.
WINDOW_SAMPLES = 30 * 16_000
# Far below the decoder's limit of half its 448-token context for a prefix.
MAX_PREFIX_CHARS = 600
# A prompt a caller may give (HTTP and live sessions alike); Whisper keeps only its
# last 224 tokens, so more is only cost.
MAX_PROMPT_CHARS = 2000


def check_prefix(audio: np.ndarray, options: TranscribeOptions) -> None:
    """A prefix is for one window of audio and a short text (both engines would
    otherwise force it on every window, or truncate it)."""
    if options.prefix is None:
        return
    if len(audio) > WINDOW_SAMPLES:
        raise ValueError("a decoding prefix needs audio of at most 30 s")
    if len(options.prefix) > MAX_PREFIX_CHARS:
        raise ValueError(f"a decoding prefix is at most {MAX_PREFIX_CHARS} characters")


def require_multilingual(engine: Engine) -> None:
    """Language detection only makes sense with a multilingual model."""
    if not engine.multilingual:
        raise UnsupportedOption(
            f"model {engine.model_name} is English-only; language detection needs a "
            "multilingual model (e.g. WHISPER_MODEL=base)",
            "model",
        )
