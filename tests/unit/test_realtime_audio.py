"""Live audio in: client frames to 16 kHz samples, and the streaming server VAD on
real speech (issue 17, in progress)."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest

from tests.support import LONG_AUDIO
from tests.support.speakers import load
from whisper_service.audio import SAMPLE_RATE
from whisper_service.realtime.audio import FrameError, PcmStream, check_rate, from_base64
from whisper_service.realtime.vad import FRAME, StreamingVad, TurnDetection


def tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")


@pytest.mark.parametrize("frame_samples", [480, 4800, 1001])
def test_24_khz_frames_become_16_khz_without_a_seam(frame_samples: int) -> None:
    pcm = tone(24_000, 2.0)
    stream = PcmStream(24_000)
    out = [stream.push(pcm[i : i + frame_samples].tobytes())
           for i in range(0, len(pcm), frame_samples)]  # fmt: skip
    out.append(stream.flush())
    samples = np.concatenate(out)
    assert abs(len(samples) - 2 * SAMPLE_RATE) <= 1
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(samples)) / SAMPLE_RATE)
    assert np.abs(samples[100:-100] - expected[100:-100]).max() < 1e-3


def test_16_khz_frames_pass_through() -> None:
    pcm = tone(SAMPLE_RATE, 0.5)
    samples = PcmStream(SAMPLE_RATE).push(pcm.tobytes())
    assert np.allclose(samples, pcm / 32768.0)


def test_bad_frames_are_named() -> None:
    with pytest.raises(FrameError) as odd:
        PcmStream(24_000).push(b"\x00\x01\x02")
    assert odd.value.code == "invalid_audio_frame"
    with pytest.raises(FrameError) as rate:
        check_rate(44_100)
    assert rate.value.code == "invalid_sample_rate"
    with pytest.raises(FrameError) as text:
        from_base64("not base64!")
    assert text.value.code == "invalid_base64"
    assert from_base64(base64.b64encode(b"\x01\x02").decode()) == b"\x01\x02"


def test_streaming_vad_scores_as_the_whole_file_does() -> None:
    from faster_whisper.vad import get_vad_model

    audio = load(LONG_AUDIO)[: 20 * SAMPLE_RATE]
    vad = StreamingVad(TurnDetection())
    scored: list[float] = []
    step = vad._step
    vad._step = lambda p: (scored.append(p), step(p))[1]  # type: ignore[method-assign]
    for start in range(0, len(audio), 1337):  # frames that do not align with Silero's
        vad.feed(audio[start : start + 1337])
    offline = get_vad_model()(audio[: len(scored) * FRAME]).reshape(-1)
    assert len(scored) == len(audio) // FRAME
    # All but the last frame: faster-whisper's offline call zeroes the last frame's
    # final 64 samples (its context array is a view of the audio).
    assert np.abs(np.array(scored) - offline)[:-1].max() < 1e-3


def turns(audio: np.ndarray, detection: TurnDetection) -> list[tuple[float, float]]:
    vad = StreamingVad(detection)
    found, start = [], None
    for at in range(0, len(audio), SAMPLE_RATE // 10):  # 100 ms, as a client sends
        for event in vad.feed(audio[at : at + SAMPLE_RATE // 10]):
            if event.kind == "started":
                start = event.sample
            elif start is not None:
                found.append((start / SAMPLE_RATE, event.sample / SAMPLE_RATE))
    return found


def test_the_radio_address_splits_at_its_pauses() -> None:
    audio = load(LONG_AUDIO)
    found = turns(audio, TurnDetection())
    assert len(found) >= 10
    for (_, end), (start, _) in itertools.pairwise(found):
        assert start >= end - 0.3 - 1e-6  # the next turn's prefix may reach back 300 ms
    # Each boundary is a pause: little energy in the 200 ms after a turn ends.
    loud = np.sqrt(np.mean(np.square(audio)))
    for _, end in found[:-1]:
        after = audio[int(end * SAMPLE_RATE) : int((end + 0.2) * SAMPLE_RATE)]
        assert np.sqrt(np.mean(np.square(after))) < loud


def test_longer_silence_settings_give_fewer_turns_and_silence_none() -> None:
    audio = load(LONG_AUDIO)[: 60 * SAMPLE_RATE]
    short = turns(audio, TurnDetection(silence_duration_ms=300))
    long = turns(audio, TurnDetection(silence_duration_ms=1500))
    assert len(long) < len(short)
    assert turns(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), TurnDetection()) == []
