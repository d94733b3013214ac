"""Media files made on the fly for tests: what ../shared/audio does not hold."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def silent_video(path: Path) -> Path:
    """An MP4 holding one second of video and no audio stream."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i * 20, dtype=np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def lying_flac(path: Path, seconds: int) -> Path:
    """A small FLAC of digital silence that decodes to ``seconds`` of audio."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=8000, layout="mono")
        block = np.zeros((1, 65536), dtype=np.int16)
        for i in range(seconds * 8000 // 65536):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 65536
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def stereo_wav(path: Path, left: np.ndarray, right: np.ndarray, rate: int = 16_000) -> Path:
    """A 16-bit stereo WAV from two float channels in [-1, 1]."""
    interleaved = np.stack([left, right], axis=1).reshape(1, -1)
    pcm = (np.clip(interleaved, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
