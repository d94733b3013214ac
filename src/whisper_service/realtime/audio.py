"""Client audio frames to 16 kHz mono float32: base64 (OpenAI's
``input_audio_buffer.append``) or raw bytes (the native stream), 16-bit little-endian
PCM at 24 kHz (OpenAI's only rate) or 16 kHz.

Every malformed frame is a ``FrameError`` with a message for the client's ``error``
event; nothing is guessed (an odd byte count is not padded, a wrong rate not assumed).
"""

from __future__ import annotations

import base64
import binascii

import av
import numpy as np

from whisper_service.audio import SAMPLE_RATE

RATES = (24_000, 16_000)


class FrameError(ValueError):
    """A frame that cannot be audio; ``code`` names the fault."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_rate(rate: int) -> int:
    """``rate`` if this service takes it."""
    if rate not in RATES:
        raise FrameError(
            "invalid_sample_rate",
            f"audio must be 16-bit PCM at {' or '.join(str(r) for r in RATES)} Hz, not {rate}",
        )
    return rate


def from_base64(data: str) -> bytes:
    """The bytes of a base64 audio field."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FrameError("invalid_base64", "audio is not valid base64") from exc


def check_frame(frame: bytes) -> None:
    """16-bit PCM: an even number of bytes."""
    if len(frame) % 2:
        raise FrameError(
            "invalid_audio_frame",
            f"16-bit PCM frames hold an even number of bytes; this one has {len(frame)}",
        )


class PcmStream:
    """One client's PCM16 frames at ``rate`` as 16 kHz float32, frame after frame.

    Resampling keeps its filter state across frames (FFmpeg's resampler through PyAV),
    so frame edges leave no clicks and no sample is lost or repeated; what a frame
    leaves in the filter comes out with the next one, or with ``flush``.
    """

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self._resampler = (
            None
            if rate == SAMPLE_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )
        self._pts = 0

    def push(self, frame: bytes) -> np.ndarray:
        """The 16 kHz samples of ``frame`` (and of what the filter held)."""
        check_frame(frame)
        pcm = np.frombuffer(frame, dtype="<i2")
        if self._resampler is None or not len(pcm):
            return pcm.astype(np.float32) / 32768.0
        audio = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        audio.sample_rate = self.rate
        audio.pts = self._pts
        self._pts += len(pcm)
        return self._collect(self._resampler.resample(audio))

    def flush(self) -> np.ndarray:
        """What the filter still holds (at the end of the stream)."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)
