"""Decode any accepted audio container to what Whisper eats: 16 kHz mono float32.

PyAV (FFmpeg's libraries in-process) does the demuxing, decoding, down-mixing and
resampling; no ffmpeg subprocess. Only the demuxers of ``ACCEPTED_DEMUXERS`` may open
an input: FFmpeg would otherwise guess the format from the bytes, and some of its
demuxers (concat scripts, HLS and DASH playlists, image sequences) read *other* files,
which would let an upload name a file of the server's own disk. Nested opens are
refused too (``protocol_whitelist``).

Decoding is packet by packet: a frame whose sample rate or channel layout differs
from the previous one (joined recordings) gets a new resampler; an isolated packet the
decoder rejects (the ID3 tag at the start of a joined MP3) is skipped, while damage at
the end (truncation) or damage everywhere is refused. The duration limit is enforced
while decoding, into one buffer sized from the container's own duration, so a small
file that expands to hours stops at the limit instead of allocating all of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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
SAMPLE_BYTES = 4  # float32
# FFmpeg demuxer names (a name matches FFmpeg's comma-separated names: "mov" is the
# demuxer of mov, mp4, m4a and 3gp). None of these reads anything but its own input.
ACCEPTED_DEMUXERS = (
    "wav", "w64", "flac", "mp3", "ogg", "matroska", "mov", "aac", "aiff", "caf", "amr",
    "amrnb", "amrwb", "au", "asf", "avi", "mpegts", "mpeg", "flv", "wv", "ape", "tta", "dsf",
    "voc", "ac3", "eac3", "dts", "truehd", "mlp", "gsm", "xwma",
)  # fmt: skip
ACCEPTED_DESCRIPTION = (
    "WAV, FLAC, MP3, Ogg (Vorbis, Opus), WebM/Matroska, MP4/M4A/MOV, AAC, AIFF, CAF, AMR, "
    "WMA/ASF, AVI, MPEG-TS/PS, FLV, WavPack, APE, TTA, DSF, AC-3/E-AC-3, DTS"
)
# Bad packets tolerated, when good audio follows each: joins, a damaged frame.
MAX_BAD_PACKETS = 16
BAD_PACKET_SHARE = 0.01
# Capacity of the sample buffer when the container does not say how long it is.
UNKNOWN_DURATION_SECONDS = 60.0

# Raised by a hook to stop decoding (a deadline, a client gone, memory refused).
Check = Callable[[], None]
Reserve = Callable[[int], None]


class AudioError(ServiceError):
    """The input cannot be turned into audio samples."""

    code = "invalid_audio"
    status = 415


class EmptyAudio(AudioError):
    """Zero bytes, or a container holding no samples."""

    code = "empty_audio"
    status = 422


class UndecodableAudio(AudioError):
    """Not an accepted media format, or corrupt audio data."""

    code = "undecodable_audio"


class NoAudioStream(AudioError):
    """A media file without an audio stream (a silent video, an image)."""

    code = "no_audio_stream"


class AudioTooLong(AudioError):
    """More audio than the configured maximum."""

    code = "audio_too_long"
    status = 413


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about its first audio stream, before decoding."""

    format: str
    codec: str
    channels: int
    sample_rate: int
    seconds: float | None  # None when the container does not say


@dataclass(frozen=True)
class DecodedAudio:
    """Samples plus what was learnt about the source while decoding."""

    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    source_format: str
    source_codec: str
    source_channels: int
    source_rate: int
    # (2, n) float32, left then right: only when decoded with ``stereo=True``.
    channels: np.ndarray | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def decoded_bytes(seconds: float) -> int:
    """Memory the decoded samples of ``seconds`` of audio take."""
    return int(seconds * SAMPLE_RATE) * SAMPLE_BYTES


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


def _not_accepted() -> UndecodableAudio:
    return UndecodableAudio(
        f"the file is not a recognised audio or video format (accepted: {ACCEPTED_DESCRIPTION})"
    )


@contextmanager
def _open_audio(source: str | Path | IO[bytes]) -> Iterator[InputContainer]:
    """The opened container, once it is known to hold an audio stream."""
    if _size_of(source) == 0:
        raise EmptyAudio("the uploaded file is empty (0 bytes)")
    options = {
        "format_whitelist": ",".join(ACCEPTED_DEMUXERS),
        # A path may be opened as a file; nothing may open anything else from it.
        "protocol_whitelist": "file" if isinstance(source, str | Path) else "none",
    }
    try:
        container = av.open(source, mode="r", options=options, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise _not_accepted() from exc
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise NoAudioStream(
                f"the file ({container.format.name}) has {', '.join(kinds)} streams "
                "but no audio stream"
            )
        yield container


def _info(container: InputContainer) -> AudioInfo:
    stream = container.streams.audio[0]
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    codec = stream.codec_context
    return AudioInfo(container.format.name, codec.name, codec.channels, codec.sample_rate, seconds)


def probe_audio(source: IO[bytes]) -> AudioInfo:
    """Check, from the header alone, that ``source`` is accepted media with an audio
    stream (the same errors as decode_audio), and what it says of itself; leaves
    ``source`` at position 0."""
    try:
        with _open_audio(source) as container:
            return _info(container)
    finally:
        source.seek(0)


def _first_capacity(info: AudioInfo, max_seconds: float) -> int:
    """Samples per channel of the first buffer: the duration the header states (or a
    guess), 1 % and a second of slack since container durations are estimates, and
    never more than one past the limit."""
    expected = info.seconds if info.seconds is not None else UNKNOWN_DURATION_SECONDS
    capacity = int(expected * SAMPLE_RATE * 1.01) + SAMPLE_RATE
    return max(min(capacity, int(max_seconds * SAMPLE_RATE) + 1), SAMPLE_RATE)


def first_reservation(info: AudioInfo, *, max_seconds: float, stereo: bool = False) -> int:
    """Bytes ``decode_audio`` reserves before its first allocation, for a source whose
    header says ``info``: a caller may hold them before the decoding starts."""
    return _first_capacity(info, max_seconds) * (2 if stereo else 1) * SAMPLE_BYTES


class _Samples:
    """A growing float32 buffer; ``reserve`` is told its size before each allocation."""

    def __init__(self, capacity: int, reserve: Reserve | None) -> None:
        self._reserve = reserve
        self.size = 0
        self.data = self._allocate(capacity)

    def _allocate(self, capacity: int) -> np.ndarray:
        if self._reserve is not None:
            self._reserve(capacity * SAMPLE_BYTES)
        return np.empty(capacity, dtype=np.float32)

    def extend(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self.data):
            grown = self._allocate(max(end, 2 * len(self.data)))
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = chunk
        self.size = end

    def trimmed(self) -> np.ndarray:
        """The samples, the buffer shrunk to fit (in place: no second copy)."""
        self.data.resize(self.size, refcheck=False)
        return self.data


def decode_audio(
    source: str | Path | IO[bytes],
    *,
    max_seconds: float,
    check: Check | None = None,
    reserve: Reserve | None = None,
    stereo: bool = False,
) -> DecodedAudio:
    """Decode ``source`` (a path or a seekable binary file) to 16 kHz mono float32;
    with ``stereo``, also its two channels (for diarization by channel: the mono
    samples are their mean; the memory reserved is five times the mono samples').

    ``check`` is called between packets and may raise to stop (a deadline, a client
    gone); ``reserve(nbytes)`` is called before the sample buffer is allocated or
    grown, and may raise to refuse the memory. Raises an :class:`AudioError` subclass
    saying exactly what was wrong with the input.
    """
    with _open_audio(source) as container:
        info = _info(container)
        width = 2 if stereo else 1
        max_samples = int(max_seconds * SAMPLE_RATE) * width
        samples = _Samples(_first_capacity(info, max_seconds) * width, reserve)
        try:
            _decode_into(container, samples, max_samples, check, "stereo" if stereo else "mono")
        except ServiceError:  # the input's fault, a hook's refusal, a deadline
            raise
        except av.error.FFmpegError as exc:
            position = samples.size / SAMPLE_RATE
            raise UndecodableAudio(
                f"the {info.codec} audio data is corrupt or truncated "
                f"(decoding failed after {position:.1f} s)"
            ) from exc
        except Exception as exc:  # whatever FFmpeg or PyAV raise, never a 500
            raise UndecodableAudio(
                f"the {info.codec} audio could not be decoded ({type(exc).__name__})"
            ) from exc
    if samples.size > max_samples:
        raise AudioTooLong(f"the audio is longer than the {max_seconds:g} s limit")
    if samples.size == 0:
        raise EmptyAudio("the file contains an audio stream but no audio samples")
    if not stereo:
        return DecodedAudio(
            samples.trimmed(), info.format, info.codec, info.channels, info.sample_rate
        )
    if reserve is not None:
        # At the peak: the interleaved samples, the two channels apart, and their mix.
        reserve(samples.size * SAMPLE_BYTES * 5 // 2)
    channels = np.ascontiguousarray(samples.trimmed().reshape(-1, 2).T)
    mono = channels.mean(axis=0, dtype=np.float32)
    return DecodedAudio(mono, info.format, info.codec, info.channels, info.sample_rate, channels)


def _decode_into(
    container: InputContainer,
    samples: _Samples,
    max_samples: int,
    check: Check | None,
    layout: str,
) -> None:
    stream = container.streams.audio[0]
    resampler: av.AudioResampler | None = None
    shape: tuple[int, str, str] | None = None
    packets = bad = 0
    damaged = False  # a bad packet not yet followed by good audio

    def add(frames: list[av.AudioFrame]) -> None:
        for out in frames:
            samples.extend(out.to_ndarray().reshape(-1))
            if samples.size > max_samples:
                limit = max_samples / SAMPLE_RATE
                raise AudioTooLong(f"the audio is longer than the {limit:g} s limit")

    for packet in container.demux(stream):
        if check is not None:
            check()
        packets += 1
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            bad += 1
            damaged = True
            if bad > max(MAX_BAD_PACKETS, BAD_PACKET_SHARE * packets):
                raise UndecodableAudio(
                    f"the audio data is corrupt ({bad} of {packets} packets undecodable)"
                ) from exc
            continue
        for frame in frames:
            damaged = False
            frame_shape = (frame.sample_rate, frame.layout.name, frame.format.name)
            if resampler is None or frame_shape != shape:
                # Joined recordings change rate or channels mid-stream: a resampler is
                # set up for one input shape, so flush it and start another.
                if resampler is not None:
                    add(resampler.resample(None))
                resampler = av.AudioResampler(format="flt", layout=layout, rate=SAMPLE_RATE)
                shape = frame_shape
            add(resampler.resample(frame))
    if damaged:
        raise UndecodableAudio("the audio data is truncated (its last packets are undecodable)")
    if resampler is not None:
        add(resampler.resample(None))
