"""The reference engine: openai-whisper on torch (float32 on CPU).

openai-whisper's decoder installs forward hooks on the shared model for its KV cache
and word alignment, so one model object must never decode two inputs at once. The
engine keeps one replica per inference worker and hands each call its own.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import whisper
import whisper.transcribe
from whisper.audio import HOP_LENGTH, N_FFT, N_SAMPLES, mel_filters

from whisper_service.engines.base import (
    CancelToken,
    Segment,
    SegmentCallback,
    TranscribeOptions,
    Transcription,
    VadSettings,
    Word,
    check_options,
    check_prefix,
    require_multilingual,
)
from whisper_service.engines.features import BLOCK_FRAMES, reflected_signal
from whisper_service.engines.regions import Region, decode_regions
from whisper_service.engines.torch_optimize import quantize_int8
from whisper_service.models import ModelArtifact


def blockwise_log_mel(
    audio: np.ndarray | torch.Tensor,
    n_mels: int = 80,
    padding: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """whisper.audio.log_mel_spectrogram, a block of frames at a time: the same
    numbers without the whole recording's STFT in memory at once (openai-whisper's own
    takes 820 MB more for 30 minutes of audio; see engines/features.py)."""
    samples = audio.numpy() if torch.is_tensor(audio) else np.asarray(audio)
    samples = samples.astype(np.float32, copy=False)
    half = N_FFT // 2
    length = len(samples) + padding
    frames = 1 + (length + 2 * half - N_FFT) // HOP_LENGTH
    window = torch.hann_window(N_FFT)
    filters = mel_filters("cpu", n_mels)
    log_spec = torch.empty((n_mels, frames - 1), dtype=torch.float32)
    for first in range(0, frames - 1, BLOCK_FRAMES):
        last = min(first + BLOCK_FRAMES, frames - 1)
        start, stop = first * HOP_LENGTH, (last - 1) * HOP_LENGTH + N_FFT
        signal = torch.from_numpy(reflected_signal(samples, length, half, start, stop))
        stft = torch.stft(
            signal, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True
        )
        mel = filters @ (stft.abs() ** 2)
        log_spec[:, first:last] = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    return log_spec if device is None else log_spec.to(device)


# openai-whisper's transcribe() computes the spectrogram of the whole input itself,
# through this module-level name; the block-wise equivalent keeps its memory bounded.
whisper.transcribe.log_mel_spectrogram = blockwise_log_mel


class _Replica:
    """One model copy plus the cancel token of the call now using it."""

    def __init__(self, model: whisper.Whisper) -> None:
        self.model = model
        self.token: CancelToken | None = None
        # Checked before every encoder pass and every decoder step (one token), so a
        # cancelled or late request stops within milliseconds. Raising here is safe:
        # openai-whisper removes its KV-cache hooks in a finally block.
        model.encoder.register_forward_pre_hook(self._check)
        model.decoder.register_forward_pre_hook(self._check)

    def _check(self, module: torch.nn.Module, args: Any) -> None:
        if self.token is not None:
            self.token.check()


# "default": the engine's fastest precision that keeps the word error rate, which for
# openai-whisper is the int8 path (same WER as float32, 1.7-2x faster on short clips).
INT8_COMPUTE_TYPES = ("default", "int8", "int8_float32")


def _load(artifact: ModelArtifact, device: str, compute_type: str) -> whisper.Whisper:
    checkpoint = torch.load(artifact.path, map_location=device, weights_only=True)
    model = whisper.Whisper(whisper.ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get("alignment_heads") or artifact.alignment_heads
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    elif artifact.name in whisper._ALIGNMENT_HEADS:
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[artifact.name])
    model = model.to(device).eval()
    if device == "cpu" and compute_type in INT8_COMPUTE_TYPES:
        model = quantize_int8(model)
    return model


def _speech_clips(audio: np.ndarray, vad: VadSettings) -> list[float]:
    """Speech regions (seconds, flat start,end list) from the Silero VAD shipped with
    faster-whisper, so both engines honour vad_filter the same way."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=vad.threshold,
        min_silence_duration_ms=vad.min_silence_ms,
        speech_pad_ms=vad.speech_pad_ms,
    )
    chunks = get_speech_timestamps(audio, options)
    return [t / 16_000 for c in chunks for t in (c["start"], c["end"])]


class OpenAIWhisperEngine:
    """openai-whisper model replicas behind the Engine protocol."""

    name = "openai-whisper"

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        device: str,
        compute_type: str,
        threads: int,
        workers: int,
    ) -> None:
        torch.set_num_threads(threads)
        self.model_name = artifact.name
        self.device = device
        self.compute_type = "int8" if compute_type in INT8_COMPUTE_TYPES else "float32"
        self._replicas: queue.Queue[_Replica] = queue.Queue()
        first = _load(artifact, device, compute_type)
        self._multilingual = bool(first.is_multilingual)
        self._replicas.put(_Replica(first))
        for _ in range(workers - 1):
            self._replicas.put(_Replica(_load(artifact, device, compute_type)))

    @property
    def multilingual(self) -> bool:
        """Whether the model knows languages other than English."""
        return self._multilingual

    @contextmanager
    def _replica(self, token: CancelToken | None) -> Iterator[_Replica]:
        replica = self._replicas.get()
        replica.token = token
        try:
            yield replica
        finally:
            replica.token = None
            self._replicas.put(replica)

    def _language_probs(self, model: whisper.Whisper, audio: np.ndarray) -> dict[str, float]:
        mel = whisper.log_mel_spectrogram(
            whisper.pad_or_trim(torch.from_numpy(audio[:N_SAMPLES])), model.dims.n_mels
        ).to(self.device)
        with torch.inference_mode():
            _, probs = model.detect_language(mel)
        return dict(probs) if isinstance(probs, dict) else dict(probs[0])

    def detect_language(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """Language probabilities for the first 30 s, most likely first."""
        require_multilingual(self)
        with self._replica(None) as replica:
            probs = self._language_probs(replica.model, audio)
        return sorted(probs.items(), key=lambda kv: kv[1], reverse=True)

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe with openai-whisper's own sliding-window loop. It has no hook per
        segment: ``on_segment`` sees them all once decoding ends."""
        vad = options.vad
        clips = (lambda samples: _speech_clips(samples, vad)) if options.vad_filter else None
        result = self._run(audio, options, cancel, clips)
        if on_segment is not None:
            for segment in result.segments:
                on_segment(segment)
        return result

    # openai-whisper has no batched decoding: regions at once would only take turns.
    concurrent_regions = 1

    def transcribe_regions(
        self,
        audio: np.ndarray,
        regions: Sequence[Region],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe each (start, end) region; they take turns on the replicas."""
        detect = self.detect_language if self.multilingual else None
        return decode_regions(self.transcribe, audio, regions, options, cancel, on_segment, detect)

    def transcribe_windows(
        self,
        audio: np.ndarray,
        windows: Sequence[tuple[float, float]],
        options: TranscribeOptions,
        cancel: CancelToken | None = None,
    ) -> Transcription:
        """Transcribe only the given (start, end) windows, in order (openai-whisper has
        no batched decoding); timestamps are on ``audio``'s timeline."""
        clips = [t for window in windows for t in window]
        result = self._run(audio, options, cancel, lambda _audio: clips)
        covered = sum(end - start for start, end in windows)
        return Transcription(
            result.text, result.language, result.language_probability, covered, result.segments
        )

    def _run(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        cancel: CancelToken | None,
        clips_of: Callable[[np.ndarray], list[float]] | None,
    ) -> Transcription:
        check_options(self, options)
        check_prefix(audio, options)
        duration = len(audio) / 16_000
        language, probability = options.language, 1.0
        with self._replica(cancel) as replica:
            clips: list[float] | str = "0"
            if clips_of is not None:
                # openai-whisper loops forever on a clip that ends past the last whole
                # mel frame (10 ms): its segment size becomes 0 and seek never moves.
                last_frame = (len(audio) // HOP_LENGTH) * HOP_LENGTH / 16_000
                clips = [min(t, last_frame) for t in clips_of(audio)]
            if language is None and not self.multilingual:
                language = "en"
            elif language is None:
                # On the first clip's audio, as openai-whisper's own loop would detect.
                first = int(clips[0] * 16_000) if isinstance(clips, list) and clips else 0
                probs = self._language_probs(replica.model, audio[first:])
                language = max(probs, key=probs.__getitem__)
                probability = probs[language]
            if clips == []:
                return Transcription("", language, probability, duration, [])
            with torch.inference_mode():
                result = replica.model.transcribe(
                    torch.from_numpy(audio),
                    language=language,
                    task=options.task,
                    temperature=options.temperatures,
                    beam_size=options.beam_size,
                    best_of=5,
                    initial_prompt=options.prompt,
                    word_timestamps=options.word_timestamps,
                    prefix=options.prefix,
                    without_timestamps=options.prefix is not None,
                    clip_timestamps=clips,
                    fp16=False,
                    verbose=None,
                )
        segments = [_segment(s) for s in result["segments"]]
        text = "".join(s.text for s in segments).strip()
        return Transcription(text, language, probability, duration, segments)


def _segment(raw: dict[str, Any]) -> Segment:
    words = raw.get("words")
    return Segment(
        id=int(raw["id"]),
        seek=int(raw["seek"]),
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=str(raw["text"]),
        tokens=[int(t) for t in raw["tokens"]],
        temperature=float(raw["temperature"]),
        avg_logprob=float(raw["avg_logprob"]),
        compression_ratio=float(raw["compression_ratio"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        words=None
        if words is None
        else [
            Word(float(w["start"]), float(w["end"]), str(w["word"]), float(w["probability"]))
            for w in words
        ],
    )
