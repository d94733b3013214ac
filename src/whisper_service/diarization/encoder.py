"""Speaker embeddings: resemblyzer's pretrained speaker encoder, run batched.

The weights are the ``pretrained.pt`` that the ``resemblyzer`` package ships (a GE2E
speaker encoder: 40 mel bands, a 3-layer LSTM of 256 units, a 256-dimensional
embedding). Only that file is used. Importing the ``resemblyzer`` package itself would
import ``webrtcvad``, which needs ``pkg_resources`` (gone from setuptools 81), and
librosa for the mel filterbank; the network is a dozen lines of torch and the mel
spectrogram is computed here with numpy exactly as resemblyzer computes it through
librosa (``melspectrogram(n_fft=400, hop_length=160, n_mels=40)``: power spectrum,
Hann window, centred frames, Slaney mel filters). So the image needs neither package.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from whisper_service.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms: 100 mel frames a second
N_MELS = 40
EMBEDDING_SIZE = 256
FRAMES_PER_SECOND = SAMPLE_RATE // HOP
# Windows are embedded in batches of this many (about 30 MiB of LSTM activations), and
# the spectrogram computed a minute of frames at a time, so memory stays flat
# however long the recording.
BATCH_WINDOWS = 64
MEL_BLOCK_FRAMES = 6000
# Voices are embedded at a common loudness, as resemblyzer's preprocessing does
# (quiet recordings are raised to -30 dBFS, loud ones left alone).
TARGET_DBFS = -30.0


def weights_path() -> Path:
    """Where the installed ``resemblyzer`` package keeps ``pretrained.pt`` (found
    without importing the package)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the resemblyzer package (speaker encoder weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


@cache
def _mel_filters() -> np.ndarray:
    from faster_whisper.feature_extractor import FeatureExtractor

    # librosa's Slaney mel filterbank, as faster-whisper reimplements it in numpy.
    filters: np.ndarray = FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels=N_MELS)
    return filters.astype(np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram of 16 kHz mono ``audio``, frame ``i``
    centred on sample ``i * 160`` (zeros beyond the ends), a block of frames at a time
    so that no copy of a long recording is made."""
    count = 1 + len(audio) // HOP
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic, as librosa's
    filters = _mel_filters().T
    result = np.empty((count, N_MELS), dtype=np.float32)
    half = N_FFT // 2
    for first in range(0, count, MEL_BLOCK_FRAMES):
        frames = min(MEL_BLOCK_FRAMES, count - first)
        start = first * HOP - half
        piece = np.zeros((frames - 1) * HOP + N_FFT, dtype=np.float32)
        lo, hi = max(start, 0), min(start + len(piece), len(audio))
        piece[lo - start : hi - start] = audio[lo:hi]
        stride = piece.strides[0]
        blocks = np.lib.stride_tricks.as_strided(piece, (frames, N_FFT), (stride * HOP, stride))
        power = np.square(np.abs(np.fft.rfft(blocks * window, axis=1)), dtype=np.float32)
        result[first : first + frames] = power @ filters
    return result


def loudness_gain(audio: np.ndarray) -> float:
    """The gain that raises ``audio`` to TARGET_DBFS (1 if it is already louder)."""
    # A block at a time: no float64 copy of a long recording.
    step = SAMPLE_RATE * 60
    energy = sum(
        float(np.dot(b, b)) for b in (audio[i : i + step] for i in range(0, len(audio), step))
    )
    power = energy / len(audio) if len(audio) else 0.0
    if power <= 0:
        return 1.0
    dbfs = 10 * np.log10(power)
    return float(max(1.0, 10 ** ((TARGET_DBFS - dbfs) / 20)))


class SpeakerEncoder:
    """resemblyzer's network with its pretrained weights; embeds windows of audio.

    Thread-safe: torch modules in eval mode under ``no_grad`` hold no per-call state.
    """

    def __init__(self, path: Path | None = None) -> None:
        import torch
        from torch import nn

        class Network(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(N_MELS, EMBEDDING_SIZE, 3, batch_first=True)
                self.linear = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE)
                self.relu = nn.ReLU()

            def forward(self, mels: torch.Tensor) -> torch.Tensor:
                _, (hidden, _) = self.lstm(mels)
                embeds: torch.Tensor = self.relu(self.linear(hidden[-1]))
                norms: torch.Tensor = torch.norm(embeds, dim=1, keepdim=True).clamp_min(1e-9)
                return embeds / norms

        self._torch = torch
        self.network = Network()
        checkpoint = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        # The checkpoint also holds the GE2E training loss's similarity scale and bias.
        self.network.load_state_dict(checkpoint["model_state"], strict=False)
        self.network.eval()

    def embed(
        self, audio: np.ndarray, windows: Sequence[tuple[float, float]], seconds: float
    ) -> np.ndarray:
        """(len(windows), 256) unit-length embeddings of the (start, end) windows of
        ``audio`` (seconds), each cut or zero-padded to ``seconds`` of mel frames."""
        if not windows:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        mels = mel_frames(audio)
        mels *= loudness_gain(audio) ** 2  # a power spectrogram: the gain squared
        length = round(seconds * FRAMES_PER_SECOND)
        out = []
        for first in range(0, len(windows), BATCH_WINDOWS):
            chunk = windows[first : first + BATCH_WINDOWS]
            batch = np.zeros((len(chunk), length, N_MELS), dtype=np.float32)
            for row, (start, end) in enumerate(chunk):
                begin = round(start * FRAMES_PER_SECOND)
                count = max(1, min(length, round((end - start) * FRAMES_PER_SECOND)))
                piece = mels[begin : begin + count]
                batch[row, : len(piece)] = piece
            with self._torch.no_grad():
                out.append(self.network(self._torch.from_numpy(batch)).numpy())
        return np.concatenate(out).astype(np.float32)


_lock = threading.Lock()
_encoder: SpeakerEncoder | None = None


def speaker_encoder(threads: int | None = None) -> SpeakerEncoder:
    """The process's one encoder, loaded on first use (startup loads it when
    diarization is on, so no request pays for it). ``threads``: torch's intra-op
    threads, which startup sets to an inference worker's share of the CPUs (torch's
    default, every CPU, would contend with the other inference workers)."""
    global _encoder
    with _lock:
        if _encoder is None:
            if threads:
                import torch

                torch.set_num_threads(threads)
            _encoder = SpeakerEncoder()
        return _encoder
