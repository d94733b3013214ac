"""Decoding real files with PyAV: format coverage, mix-down, limits while decoding,
inputs that reference other files, joined recordings, damage."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support import REPO
from tests.support.media import (
    joined_episodes,
    lying_flac,
    mp3,
    resampled,
    silent_video,
    stereo_wav,
    surround_flac,
)
from whisper_service.audio import (
    SAMPLE_RATE,
    AudioTooLong,
    EmptyAudio,
    NoAudioStream,
    UndecodableAudio,
    decode_audio,
    probe_audio,
)
from whisper_service.errors import Refused, ServiceError

SMOKE_CLIP = REPO / "scripts" / "testing" / "data" / "smoke.flac"


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


def referencing_inputs(folder: Path) -> dict[str, tuple[Path, bytes]]:
    """Inputs whose demuxer would read another file: (how to open it, its bytes)."""
    (folder / "target.flac").write_bytes(SMOKE_CLIP.read_bytes())
    concat = b"ffconcat version 1.0\nfile target.flac\n"
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\ntarget.flac\n#EXT-X-ENDLIST\n"
    return {
        "concat script named .wav": (folder / "c.wav", concat),
        "ffconcat named .mp3": (folder / "c.mp3", concat),
        "HLS playlist": (folder / "p.m3u8", playlist),
    }


@pytest.mark.parametrize(
    "name", ["concat script named .wav", "ffconcat named .mp3", "HLS playlist"]
)
def test_inputs_that_reference_other_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path, content = referencing_inputs(tmp_path)[name]
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)  # relative names resolve here, as in the server's cwd
    # Control: FFmpeg left to guess opens the other file and decodes it.
    with av.open(str(path)) as guessed:
        assert guessed.format.name in ("concat", "hls")
        assert sum(f.samples for f in guessed.decode(audio=0)) > 0
    for source in (path, io.BytesIO(content)):
        with pytest.raises(UndecodableAudio, match="not a recognised audio or video format"):
            decode_audio(source, max_seconds=60)  # type: ignore[arg-type]
    with pytest.raises(UndecodableAudio):
        probe_audio(io.BytesIO(content))


def test_joined_recordings_that_change_rate_and_channels_decode_whole(audio_dir: Path) -> None:
    speech = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    joined = joined_episodes(speech)
    audio = decode_audio(io.BytesIO(joined), max_seconds=60)
    assert audio.duration == pytest.approx(3.0 + 11.0, abs=0.2)

    # The second episode's speech survives the switch to 48 kHz stereo: its loudness
    # over 100 ms frames follows the original's (codec delays shift it by a few ms).
    def envelope(x: np.ndarray) -> np.ndarray:
        frames = x[: len(x) // 1600 * 1600].reshape(-1, 1600)
        return np.sqrt((frames**2).mean(axis=1))

    tail = envelope(audio.samples[-len(speech) :])
    original = envelope(speech)
    assert np.corrcoef(tail, original)[0, 1] > 0.9


def test_corrupt_everywhere_is_refused_but_truncation_too(audio_dir: Path) -> None:
    speech = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    data = bytearray(mp3(resampled(speech, 48_000, 1), 48_000))
    for position in range(5_000, len(data), 400):  # damage every few frames
        data[position : position + 40] = bytes(40)
    with pytest.raises(UndecodableAudio, match="corrupt"):
        decode_audio(io.BytesIO(bytes(data)), max_seconds=60)


def test_hooks_can_stop_decoding_and_refuse_memory(audio_dir: Path) -> None:
    reserved: list[int] = []
    audio = decode_audio(audio_dir / "jfk.flac", max_seconds=60, reserve=reserved.append)
    # One allocation, sized from the container's duration (11 s): no doubling, no copy.
    assert len(reserved) == 1
    assert audio.samples.nbytes <= reserved[0] <= audio.samples.nbytes * 1.2

    def refuse(nbytes: int) -> None:
        raise ServiceError("no memory for you", code="memory_pressure", status=503)

    with pytest.raises(ServiceError, match="no memory"):
        decode_audio(audio_dir / "jfk.flac", max_seconds=60, reserve=refuse)
    calls: list[int] = []

    def stop_after_ten() -> None:
        calls.append(1)
        if len(calls) > 10:
            raise Refused("deadline_exceeded")

    with pytest.raises(Refused, match="deadline_exceeded"):
        decode_audio(audio_dir / "jfk.flac", max_seconds=60, check=stop_after_ten)


def test_a_192_khz_surround_flac_decodes() -> None:
    audio = decode_audio(io.BytesIO(surround_flac(2.0)), max_seconds=60)
    assert (audio.source_channels, audio.source_rate) == (8, 192_000)
    assert audio.duration == pytest.approx(2.0, abs=0.01)
