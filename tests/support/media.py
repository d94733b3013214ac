"""Media files made on the fly for tests: what ../shared/audio does not hold."""

from __future__ import annotations

import io
import wave
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


def encode(
    samples: np.ndarray, rate: int, layout: str, *, fmt: str, codec: str, sample_format: str
) -> bytes:
    """``samples`` (float in [-1, 1], one row per channel) in a container of its own."""
    channels = samples.shape[0]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        block = 1152
        for start in range(0, samples.shape[1], block):
            chunk = samples[:, start : start + block]
            if sample_format == "s16":
                data = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
            else:  # s32
                data = (np.clip(chunk, -1, 1) * (2**31 - 1)).astype(np.int32).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data), format=sample_format, layout=layout
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert channels == len(av.AudioLayout(layout).channels)
    return buffer.getvalue()


def mp3(samples: np.ndarray, rate: int, layout: str = "mono") -> bytes:
    """An MP3 file (with its ID3 tag and Xing frame, as encoders write them)."""
    return encode(samples, rate, layout, fmt="mp3", codec="libmp3lame", sample_format="s16")


def tone(seconds: float, rate: int, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    """A sine tone, one row per channel."""
    t = np.arange(int(seconds * rate)) / rate
    return np.tile(0.3 * np.sin(2 * np.pi * hz * t), (channels, 1))


def resampled(samples: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """16 kHz mono samples at another rate, copied onto ``channels`` channels."""
    positions = np.arange(int(len(samples) * rate / 16_000)) * 16_000 / rate
    mono = np.interp(positions, np.arange(len(samples)), samples)
    return np.tile(mono, (channels, 1))


def joined_episodes(speech: np.ndarray) -> bytes:
    """Two MP3 files joined end to end, as podcast tools do: a 22.05 kHz mono tone,
    then ``speech`` (16 kHz mono samples) at 48 kHz stereo."""
    first = mp3(tone(3.0, 22_050), 22_050, "mono")
    second = mp3(resampled(speech, 48_000, 2), 48_000, "stereo")
    return first + second


def surround_flac(seconds: float, rate: int = 192_000) -> bytes:
    """A 7.1 FLAC at 192 kHz, 24-bit: valid, and far more to decode than its length says."""
    return encode(
        tone(seconds, rate, channels=8), rate, "7.1", fmt="flac", codec="flac", sample_format="s32"
    )


def repeated_wav(source: Path, times: int, path: Path) -> Path:
    """``source`` (a WAV) played ``times`` times over, as one WAV."""
    with wave.open(str(source)) as wav:
        params, frames = wav.getparams(), wav.readframes(wav.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(frames * times)
    return path
