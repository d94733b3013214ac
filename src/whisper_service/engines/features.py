"""Whisper's log-Mel features of long audio, in bounded memory.

faster-whisper computes the spectrogram of a whole recording in one pass: the framed
signal, its complex STFT and the power spectrum all exist at once, about 50 bytes per
sample (measured: 1.5 GB more for 30 minutes of audio). Every frame depends only on
its own 400 samples, and the one global step, the clamp to 8 below the loudest value,
needs only the finished log-Mel array (80 values per 10 ms). So the frames are
computed a block at a time and the clamp applied at the end: the same numbers, with
a working set of one block.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

from whisper_service.engines.speech import WINDOW_SECONDS

# Frames per block: 30 s of audio.
BLOCK_FRAMES = 3000


class BlockwiseFeatureExtractor(FeatureExtractor):  # type: ignore[misc]
    """faster-whisper's FeatureExtractor, computed block by block."""

    def __call__(
        self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None
    ) -> np.ndarray:
        """The log-Mel spectrogram, as FeatureExtractor.__call__ returns it."""
        if chunk_length is not None:
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        audio = waveform if waveform.dtype == np.float32 else waveform.astype(np.float32)
        half = self.n_fft // 2
        # The signal FeatureExtractor frames: the audio, `padding` zeros, then reflected
        # by n_fft/2 at both ends (STFT centring). Frames read it through reflected_signal.
        length = len(audio) + (padding or 0)
        frames = 1 + (length + 2 * half - self.n_fft) // self.hop_length
        window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)
        log_spec = np.empty((self.mel_filters.shape[0], frames - 1), dtype=np.float32)
        for first in range(0, frames - 1, BLOCK_FRAMES):
            last = min(first + BLOCK_FRAMES, frames - 1)
            start = first * self.hop_length
            stop = (last - 1) * self.hop_length + self.n_fft
            signal = reflected_signal(audio, length, half, start, stop)
            framed = np.lib.stride_tricks.sliding_window_view(signal, self.n_fft)[
                :: self.hop_length
            ]
            stft = np.fft.rfft(framed * window, n=self.n_fft, axis=-1).astype(np.complex64)
            power = np.abs(stft.T) ** 2
            mel = self.mel_filters @ power
            log_spec[:, first:last] = np.log10(np.clip(mel, a_min=1e-10, a_max=None))
        np.maximum(log_spec, log_spec.max() - 8.0, out=log_spec)
        log_spec += 4.0
        log_spec /= 4.0
        return log_spec


def reflected_signal(
    audio: np.ndarray, length: int, half: int, start: int, stop: int
) -> np.ndarray:
    """Samples [start, stop) of: ``audio`` zero-padded to ``length``, then reflected by
    ``half`` at both ends (numpy's "reflect": the edge sample is not repeated)."""
    index = np.arange(start, stop) - half
    index = np.where(index < 0, -index, index)
    index = np.where(index >= length, 2 * (length - 1) - index, index)
    inside = index < len(audio)
    out = np.zeros(stop - start, dtype=np.float32)
    out[inside] = audio[index[inside]]
    return out


def use_blockwise_features(model: Any) -> None:
    """Give a faster-whisper WhisperModel the block-wise extractor (same settings)."""
    model.feature_extractor = BlockwiseFeatureExtractor(**model.feat_kwargs)


# A window fitted to short audio (engines/faster_whisper_engine.py): at least this
# much silence after the audio, the window in steps of FITTED_STEP_SECONDS from
# FITTED_MIN_SECONDS (windows of a few lengths, so that decoder calls of several
# streams' partials share batches).
FITTED_SILENCE_SECONDS = 1.0
FITTED_STEP_SECONDS = 5.0
FITTED_MIN_SECONDS = 10.0
FRAMES_PER_SECOND = 100


def fitted_frames(seconds: float) -> int | None:
    """The log-Mel frames of the window fitted to ``seconds`` of audio; None when
    that window would be Whisper's 30 s one anyway."""
    steps = math.ceil((seconds + FITTED_SILENCE_SECONDS) / FITTED_STEP_SECONDS)
    window = max(FITTED_MIN_SECONDS, steps * FITTED_STEP_SECONDS)
    if window >= WINDOW_SECONDS:
        return None
    return int(window * FRAMES_PER_SECOND)


def fitted_window(features: np.ndarray, frames: int) -> np.ndarray:
    """The first ``frames`` of a window faster-whisper padded to 30 s, its padding
    made silence. faster-whisper pads the normalised log-Mel with zeros, a level
    between silence and speech; over a 30 s window Whisper copes, over a short one
    it lost words (docs/benchmarks.md). Silence is the floor every frame was clamped
    to: 2 below the loudest value (8 in log10 units, normalised by 4)."""
    window = np.array(features[..., :frames], dtype=np.float32)
    # Padding columns are exactly zero in all 80 bands; a frame of audio never is.
    padded = ~np.any(window != 0.0, axis=-2, keepdims=True)
    # The loudest frame of audio (quiet audio is below zero, the padding's level), per
    # window of a batch; a window with no audio at all keeps its zeros.
    loudest = np.where(padded, -np.inf, window).max(axis=(-2, -1), keepdims=True)
    floor = np.where(np.isfinite(loudest), loudest - 2.0, 0.0)
    return np.where(padded, floor, window).astype(np.float32)
