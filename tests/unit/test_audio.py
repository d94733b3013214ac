"""Decoding real files with PyAV: format coverage, mix-down, limits while decoding."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.media import lying_flac, silent_video, stereo_wav
from whisper_service.audio import (
    SAMPLE_RATE,
    AudioTooLong,
    EmptyAudio,
    NoAudioStream,
    UndecodableAudio,
    decode_audio,
)


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("jfk.flac", 11.0),
        ("hotwords.mp3", 4.0),
        ("multilingual.mp3", 59.9),
        ("stereo_diarization.wav", 5.0),
    ],
)
def test_real_files_decode_to_16k_mono_float32(audio_dir: Path, name: str, seconds: float) -> None:
    decoded = decode_audio(audio_dir / name, max_seconds=600)
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1
    assert decoded.duration == pytest.approx(seconds, abs=0.1)
    # Resampling may overshoot full scale slightly; Whisper does not clip.
    assert 0.01 < float(np.abs(decoded.samples).max()) < 1.5


def test_file_objects_decode_like_paths(audio_dir: Path) -> None:
    from_path = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    from_file = decode_audio(io.BytesIO((audio_dir / "jfk.flac").read_bytes()), max_seconds=60)
    np.testing.assert_array_equal(from_path, from_file.samples)


def test_every_channel_is_mixed_in(audio_dir: Path, tmp_path: Path) -> None:
    speech = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    silence = np.zeros_like(speech)
    left = decode_audio(stereo_wav(tmp_path / "l.wav", speech, silence), max_seconds=60).samples
    right = decode_audio(stereo_wav(tmp_path / "r.wav", silence, speech), max_seconds=60).samples
    for mono in (left, right):
        assert np.corrcoef(mono, speech)[0, 1] > 0.99
        gain = float(np.std(mono) / np.std(speech))
        assert 0.45 < gain < 0.75  # half or -3 dB, depending on FFmpeg's mix matrix
    np.testing.assert_allclose(left, right, atol=1e-4)


def test_duration_limit_stops_decoding_early(tmp_path: Path) -> None:
    two_hours = lying_flac(tmp_path / "two_hours.flac", 7200)
    assert two_hours.stat().st_size < 3 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong, match="60 s limit"):
            decode_audio(two_hours, max_seconds=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_decode = 7200 * SAMPLE_RATE * 4
    assert peak < full_decode / 20, f"peak {peak} bytes: decoding did not stop at the limit"


def test_empty_and_bad_inputs(audio_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EmptyAudio):
        decode_audio(io.BytesIO(b""), max_seconds=60)
    with pytest.raises(UndecodableAudio, match="not a recognised"):
        decode_audio(io.BytesIO(b"plain text, no audio here\n" * 40), max_seconds=60)
    truncated = (audio_dir / "jfk.flac").read_bytes()[:200_000]
    with pytest.raises(UndecodableAudio, match="truncated"):
        decode_audio(io.BytesIO(truncated), max_seconds=60)
    with pytest.raises(NoAudioStream, match="video"):
        decode_audio(silent_video(tmp_path / "v.mp4"), max_seconds=60)
