"""The fast engine: faster-whisper on CTranslate2 (int8 on CPU by default)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.vad import VadOptions

from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines.base import (
    CancelToken,
    Segment,
    SegmentCallback,
    TranscribeOptions,
    Transcription,
    Word,
    check_options,
    check_prefix,
    require_multilingual,
)
from whisper_service.engines.batching import BatchingWhisper, BatchLimits, BatchReport, Gatherer
from whisper_service.engines.features import fitted_frames, fitted_window, use_blockwise_features
from whisper_service.engines.regions import Region, clipped, decode_regions
from whisper_service.engines.speech import WINDOW_SECONDS
from whisper_service.models import ModelArtifact

# A window's undecoded tail shorter than this holds no sentence worth a second pass.
MIN_TAIL_SECONDS = 1.0
# The previous text each window of a long request's regions is conditioned on: its
# last 48 tokens (about 35 words). CTranslate2 batches prompts only with as much
# previous text before <|startoftranscript|>; cut to one length, the regions' windows
# past their first share calls. Measured on 20 minutes (docs/benchmarks.md): the words
# as good as the whole context's, where regions with no context batch as well.
REGION_CONTEXT_TOKENS = 48


class _PerWindowEncoder:
    """The ``WhisperModel`` as faster-whisper's batched pipeline sees it, except that
    on the CPU its windows are encoded one at a time: a batched encoder pass costs
    more per window (8 windows: 0.32 against 0.28 s in float32, 0.29 against 0.21 s
    in int8), and through the gatherer other requests' encoder calls go between."""

    def __init__(self, model: WhisperModel) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: np.ndarray) -> Any:
        """Encoder outputs of ``features`` [n, mels, frames]."""
        if features.ndim == 2 or len(features) == 1 or self._model.model.device != "cpu":
            return self._model.encode(features)
        outputs = [np.asarray(self._model.encode(window[np.newaxis])) for window in features]
        return ctranslate2.StorageView.from_array(np.concatenate(outputs))


class _WhisperModel(WhisperModel):  # type: ignore[misc]
    """faster-whisper's model, whose encoder may see a window fitted to short audio
    instead of 30 s (``TranscribeOptions.fitted_window``): Whisper's encoder attends
    over every frame of its window, so a 10 s window costs a fifth of a 30 s one
    (0.055 against 0.29 s for tiny.en on two threads). faster-whisper pads each
    window to 30 s before encoding it; this cuts it back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._window = threading.local()

    @contextmanager
    def fitted(self, frames: int | None) -> Iterator[None]:
        """This thread's encoder calls see ``frames`` frames while inside (None: 30 s)."""
        self._window.frames = frames
        try:
            yield
        finally:
            self._window.frames = None

    def encode(self, features: np.ndarray) -> Any:
        """Encoder outputs of ``features``, cut to this thread's fitted window."""
        frames = getattr(self._window, "frames", None)
        if frames is not None and features.shape[-1] > frames:
            features = fitted_window(features, frames)
        return super().encode(features)


class FasterWhisperEngine:
    """A CTranslate2 Whisper model; ``workers`` threads may call it at once."""

    name = "faster-whisper"

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        device: str,
        compute_type: str,
        threads: int,
        workers: int,
        batch: BatchLimits | None = None,
        batch_report: BatchReport | None = None,
    ) -> None:
        self.model_name = artifact.name
        self.compute_type = compute_type
        self._model = _WhisperModel(
            str(artifact.path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            local_files_only=True,
        )
        use_blockwise_features(self._model)
        self._gatherer: Gatherer | None = None
        if batch is not None and batch.max_size > 1:
            # Requests decode as ever; their model calls are gathered into batches.
            self._gatherer = Gatherer(self._model.model, batch, batch_report)
            sot = self._model.hf_tokenizer.token_to_id("<|startoftranscript|>")
            self._model.model = BatchingWhisper(self._model.model, self._gatherer, sot)

    def _member(
        self, cancel: CancelToken | None, context_tokens: int | None = None
    ) -> AbstractContextManager[None]:
        """This thread's calls join batches while inside (when batching is on)."""
        if self._gatherer is None:
            return nullcontext()
        return self._gatherer.member(cancel, context_tokens)

    @property
    def concurrent_regions(self) -> int:
        """Regions of one recording worth decoding at once: as many windows as a
        batched call holds (1 without batching)."""
        return 1 if self._gatherer is None else self._gatherer.limits.max_size

    @property
    def multilingual(self) -> bool:
        """Whether the model knows languages other than English."""
        return bool(self._model.model.is_multilingual)

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """Language probabilities for the first 30 s, most likely first."""
        require_multilingual(self)
        with self._member(None):
            _, _, probs = self._model.detect_language(audio)
        return sorted(((lang, float(p)) for lang, p in probs), key=lambda kv: -kv[1])

    def _decoding(self, options: TranscribeOptions, language: str | None) -> dict[str, Any]:
        """faster-whisper arguments for our options, after refusing what the model
        cannot do; an English-only model is told its language."""
        check_options(self, options)
        if language is None and not self.multilingual:
            language = "en"
        return {
            "language": language,
            "task": options.task,
            "beam_size": options.beam_size,
            "best_of": 5,
            "temperature": list(options.temperatures),
            "initial_prompt": options.prompt,
            "word_timestamps": options.word_timestamps,
        }

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe; segments are generated lazily, so cancellation is checked between
        them and each is handed to ``on_segment`` as soon as it is decoded."""
        return self._sequential(audio, options, cancel, on_segment)

    def transcribe_regions(
        self,
        audio: np.ndarray,
        regions: Sequence[Region],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe each (start, end) region of ``audio`` on its own thread, their
        model calls batched together; one transcription on ``audio``'s timeline."""

        def region(
            samples: np.ndarray,
            opts: TranscribeOptions,
            token: CancelToken,
            emit: SegmentCallback | None,
        ) -> Transcription:
            seconds = len(samples) / SAMPLE_RATE
            if seconds >= WINDOW_SECONDS:
                return self._sequential(samples, opts, token, emit, REGION_CONTEXT_TOKENS)
            return self._in_silence(samples, opts, token, emit)

        detect = self.detect_language if self.multilingual else None
        return decode_regions(region, audio, regions, options, cancel, on_segment, detect)

    def _in_silence(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken,
        on_segment: SegmentCallback | None,
    ) -> Transcription:
        """A region shorter than a window, decoded with silence after it up to the
        window's end. The region ends in a pause; padded the usual way (zeros in the
        normalised log-Mel, which is not what silence looks like), Whisper took the
        speech as going on past the end and left its last sentence open, to be
        decoded again in a second window: 2 of the radio address's 5 regions and 2
        of 5 over LJSpeech twice; with silence, 1 and none. What Whisper places in
        the silence is dropped."""
        seconds = len(samples) / SAMPLE_RATE
        padded = np.zeros(int(WINDOW_SECONDS * SAMPLE_RATE), dtype=samples.dtype)
        padded[: len(samples)] = samples

        def inside(segment: Segment) -> None:
            kept = clipped(segment, seconds)
            if kept is not None and on_segment is not None:
                on_segment(kept)

        decoded = self._sequential(padded, options, cancel, inside, REGION_CONTEXT_TOKENS)
        segments = [s for s in (clipped(s, seconds) for s in decoded.segments) if s is not None]
        text = "".join(s.text for s in segments).strip()
        return dataclasses.replace(decoded, text=text, duration=seconds, segments=segments)

    def _sequential(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None,
        on_segment: SegmentCallback | None,
        context_tokens: int | None = None,
    ) -> Transcription:
        check_prefix(audio, options)
        vad = options.vad
        frames = fitted_frames(len(audio) / SAMPLE_RATE) if options.fitted_window else None
        with self._member(cancel, context_tokens), self._model.fitted(frames):
            generator, info = self._model.transcribe(
                audio,
                vad_filter=options.vad_filter,
                vad_parameters=VadOptions(
                    threshold=vad.threshold,
                    min_silence_duration_ms=vad.min_silence_ms,
                    speech_pad_ms=vad.speech_pad_ms,
                ),
                prefix=options.prefix,
                without_timestamps=options.prefix is not None,
                **self._decoding(options, options.language),
            )
            if options.prefix is not None:
                generator = self._after_prefix(generator, options.prefix)
            segments = _collect(generator, cancel, on_segment)
        text = "".join(s.text for s in segments).strip()
        return Transcription(
            text, info.language, float(info.language_probability), info.duration, segments
        )

    def _after_prefix(self, generator: Iterable[Any], prefix: str) -> Iterable[Any]:
        """CTranslate2 returns the forced prefix with the tokens that follow it
        (openai-whisper does not): drop it from the first segment."""
        tokenizer = self._model.hf_tokenizer
        forced = len(tokenizer.encode(" " + prefix.strip(), add_special_tokens=False).ids)
        for index, raw in enumerate(generator):
            if index == 0:
                tokens = list(raw.tokens)[forced:]
                raw = dataclasses.replace(raw, tokens=tokens, text=tokenizer.decode(tokens))
            yield raw

    def transcribe_windows(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        """Transcribe the given (start, end) windows (seconds, at most 30 s each) in
        batched passes; timestamps are on ``audio``'s timeline.

        The batched pipeline keeps only segments the model closed with a timestamp; the
        sequential loop would re-decode from the last one, the batched one drops the
        rest of the window (whole sentences, measured on the radio address). So a
        second batched pass decodes each window's tail after its last closed segment.
        """
        with self._member(cancel):
            return self._windows(audio, windows, options, cancel)

    def _windows(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None,
    ) -> Transcription:
        segments, info = self._batched_pass(audio, windows, options, options.language, cancel)
        tails = []
        for start, end in windows:
            closed = [s.end for s in segments if start - 0.01 <= s.start < end]
            tail_start = max(closed, default=start)
            if end - tail_start >= MIN_TAIL_SECONDS and closed:
                tails.append((tail_start, end))
        if tails:
            more, _ = self._batched_pass(audio, tails, options, info.language, cancel)
            segments = sorted(segments + more, key=lambda s: s.start)
        text = "".join(s.text for s in segments).strip()
        covered = sum(end - start for start, end in windows)
        return Transcription(
            text, info.language, float(info.language_probability), covered, segments
        )

    def _batched_pass(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        language: str | None,
        cancel: CancelToken | None,
    ) -> tuple[list[Segment], Any]:
        # A pipeline per pass: it keeps the last word's time between its batches.
        pipeline = BatchedInferencePipeline(_PerWindowEncoder(self._model))
        generator, info = pipeline.transcribe(
            audio,
            **self._decoding(options, language),
            vad_filter=False,
            clip_timestamps=[{"start": start, "end": end} for start, end in windows],
            batch_size=len(windows),
            # Segment-level timestamps inside each window, as the sequential path has.
            without_timestamps=False,
        )
        return _collect(generator, cancel, None), info


def _collect(
    generator: Iterable[Any], cancel: CancelToken | None, on_segment: SegmentCallback | None
) -> list[Segment]:
    """Engine segments to ours; faster-whisper yields lazily, so cancellation is
    checked between segments."""
    segments: list[Segment] = []
    for raw in generator:
        if cancel is not None:
            cancel.check()
        segment = Segment(
            id=raw.id - 1,  # faster-whisper counts from 1, openai-whisper from 0
            seek=raw.seek,
            start=float(raw.start),
            end=float(raw.end),
            text=raw.text,
            tokens=list(raw.tokens),
            temperature=float(raw.temperature or 0.0),
            avg_logprob=float(raw.avg_logprob),
            compression_ratio=float(raw.compression_ratio),
            no_speech_prob=float(raw.no_speech_prob),
            words=None
            if raw.words is None
            else [
                Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in raw.words
            ],
        )
        segments.append(segment)
        if on_segment is not None:
            on_segment(segment)
    return segments
