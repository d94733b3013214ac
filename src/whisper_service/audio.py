"""Decode any audio container to what Whisper eats: 16 kHz mono float32 samples.

PyAV (FFmpeg's libraries in-process) does the demuxing, decoding, down-mixing and
resampling; no ffmpeg subprocess. The duration limit is enforced while decoding, so
a small file that expands to hours of audio stops at the limit instead of allocating
all of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import av
import av.error
import numpy as np
from av.container import InputContainer

from whisper_service.errors import ServiceError

SAMPLE_RATE = 16_000


class AudioError(ServiceError):
    """The input cannot be turned into audio samples."""

    code = "invalid_audio"
    status = 415


class EmptyAudio(AudioError):
    """Zero bytes, or a container holding no samples."""

    code = "empty_audio"
    status = 422


class UndecodableAudio(AudioError):
    """Not a media file FFmpeg recognises, or corrupt audio data."""

    code = "undecodable_audio"


class NoAudioStream(AudioError):
    """A media file without an audio stream (a silent video, an image)."""

    code = "no_audio_stream"


class AudioTooLong(AudioError):
    """More audio than the configured maximum."""

    code = "audio_too_long"
    status = 413


@dataclass(frozen=True)
class DecodedAudio:
    """Samples plus what was learnt about the source while decoding."""

    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    source_format: str
    source_codec: str
    source_channels: int
    source_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def _size_of(source: str | Path | IO[bytes]) -> int | None:
    if isinstance(source, str | Path):
        return os.path.getsize(source)
    try:
        position = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(position)
        return end - position
    except (OSError, AttributeError):
        return None


@contextmanager
def _open_audio(source: str | Path | IO[bytes]) -> Iterator[InputContainer]:
    """The opened container, once it is known to hold an audio stream."""
    if _size_of(source) == 0:
        raise EmptyAudio("the uploaded file is empty (0 bytes)")
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise UndecodableAudio("the file is not a recognised audio or video format") from exc
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise NoAudioStream(
                f"the file ({container.format.name}) has {', '.join(kinds)} streams "
                "but no audio stream"
            )
        yield container


def probe_audio(source: IO[bytes]) -> None:
    """Check, from the header alone, that ``source`` is media with an audio stream
    (the same errors as decode_audio); leaves it at position 0."""
    try:
        with _open_audio(source):
            pass
    finally:
        source.seek(0)


def decode_audio(source: str | Path | IO[bytes], *, max_seconds: float) -> DecodedAudio:
    """Decode ``source`` (a path or a seekable binary file) to 16 kHz mono float32.

    Raises an :class:`AudioError` subclass describing exactly what was wrong.
    """
    with _open_audio(source) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        max_samples = int(max_seconds * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    total += len(samples)
                    if total > max_samples:
                        raise AudioTooLong(f"the audio is longer than the {max_seconds:g} s limit")
                    chunks.append(samples)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            position = total / SAMPLE_RATE
            raise UndecodableAudio(
                f"the {codec.name} audio data is corrupt or truncated "
                f"(decoding failed after {position:.1f} s)"
            ) from exc
        info = (container.format.name, codec.name, codec.channels, codec.sample_rate)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if len(samples) > max_samples:
        raise AudioTooLong(f"the audio is longer than the {max_seconds:g} s limit")
    if samples.size == 0:
        raise EmptyAudio("the file contains an audio stream but no audio samples")
    return DecodedAudio(samples.astype(np.float32, copy=False), *info)
