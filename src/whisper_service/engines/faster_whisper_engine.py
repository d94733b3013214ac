"""The fast engine: faster-whisper on CTranslate2 (int8 on CPU by default)."""

from __future__ import annotations

import numpy as np
from faster_whisper import WhisperModel

from whisper_service.engines.base import (
    CancelToken,
    ProgressCallback,
    Segment,
    TranscribeOptions,
    Transcription,
    Word,
    check_options,
    require_multilingual,
)
from whisper_service.models import ModelArtifact


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
    ) -> None:
        self.model_name = artifact.name
        self.compute_type = compute_type
        self._model = WhisperModel(
            str(artifact.path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            local_files_only=True,
        )

    @property
    def multilingual(self) -> bool:
        """Whether the model knows languages other than English."""
        return bool(self._model.model.is_multilingual)

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """Language probabilities for the first 30 s, most likely first."""
        require_multilingual(self)
        _, _, probs = self._model.detect_language(audio)
        return sorted(((lang, float(p)) for lang, p in probs), key=lambda kv: -kv[1])

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Transcription:
        """Transcribe; segments are generated lazily, so cancellation is checked between them."""
        check_options(self, options)
        language = options.language
        if language is None and not self.multilingual:
            language = "en"
        generator, info = self._model.transcribe(
            audio,
            language=language,
            task=options.task,
            beam_size=options.beam_size,
            best_of=5,
            temperature=list(options.temperatures),
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            vad_filter=options.vad_filter,
        )
        segments: list[Segment] = []
        for raw in generator:
            if cancel is not None:
                cancel.check()
            segments.append(
                Segment(
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
                        Word(float(w.start), float(w.end), w.word, float(w.probability))
                        for w in raw.words
                    ],
                )
            )
            if on_progress is not None:
                on_progress(raw.end)
        text = "".join(s.text for s in segments).strip()
        return Transcription(
            text, info.language, float(info.language_probability), info.duration, segments
        )
