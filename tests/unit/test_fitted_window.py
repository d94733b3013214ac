"""Short audio encoded in a window fitted to it (live partials): the window's length,
its padding made silence, the encoder given fewer frames, and Whisper's words on read
speech as in the 30 s window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.support import MODEL_CACHE, TEST_THREADS, ljspeech, pooled_wer
from tests.support.speakers import load
from whisper_service.engines import TranscribeOptions
from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
from whisper_service.engines.features import fitted_frames, fitted_window
from whisper_service.models import ModelFormat, resolve_model


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [(0.5, 1000), (8.9, 1000), (9.5, 1500), (13.9, 1500), (23.9, 2500), (24.5, None), (40, None)],
)
def test_the_window_holds_the_audio_and_a_second_of_silence_in_5_s_steps(
    seconds: float, frames: int | None
) -> None:
    assert fitted_frames(seconds) == frames


def test_the_padding_becomes_silence_and_the_audio_stays() -> None:
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1.0, 0.5, size=(80, 700)).astype(np.float32)
    padded = np.zeros((80, 3000), dtype=np.float32)  # as faster-whisper pads
    padded[:, :700] = audio
    window = fitted_window(padded, 1000)
    assert window.shape == (80, 1000)
    np.testing.assert_array_equal(window[:, :700], audio)
    # Silence is the floor the features were clamped to: 2 below the loudest.
    np.testing.assert_allclose(window[:, 700:], audio.max() - 2.0)
    batched = fitted_window(padded[np.newaxis], 1000)
    np.testing.assert_array_equal(batched[0], window)


def test_quiet_audio_gets_its_own_silence_not_the_paddings_level() -> None:
    quiet = np.full((80, 300), -1.5, dtype=np.float32)  # below zero: the padding is louder
    quiet[:, ::2] = -1.2
    padded = np.zeros((80, 3000), dtype=np.float32)
    padded[:, :300] = quiet
    np.testing.assert_allclose(fitted_window(padded, 1000)[:, 300:], -1.2 - 2.0)


def test_a_batch_gets_each_windows_own_silence_and_no_audio_stays_as_it_is() -> None:
    batch = np.zeros((2, 80, 3000), dtype=np.float32)
    batch[0, :, :300] = 1.0  # audio; the second window is padding alone
    window = fitted_window(batch, 1000)
    np.testing.assert_allclose(window[0, :, 300:], 1.0 - 2.0)
    np.testing.assert_array_equal(window[1], 0.0)
    assert window.dtype == np.float32


def test_temperatures_without_fallback_are_the_first_only() -> None:
    assert TranscribeOptions(fallback=False).temperatures == (0.0,)
    assert len(TranscribeOptions().temperatures) == 6
    assert TranscribeOptions(temperature=0.4, fallback=False).temperatures == (0.4,)


class EncoderSpy:
    """Stands in for the CTranslate2 model: records the frames each encoder call saw."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.frames: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: Any, **kwargs: Any) -> Any:
        self.frames.append(int(features.shape[-1]))
        return self._model.encode(features, **kwargs)


def test_short_audio_encodes_a_fitted_window_and_keeps_its_words() -> None:
    artifact = resolve_model("tiny.en", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    engine = FasterWhisperEngine(artifact, device="cpu", compute_type="int8",
                                 threads=TEST_THREADS, workers=1)  # fmt: skip
    spy = EncoderSpy(engine._model.model)
    engine._model.model = spy
    entries = ljspeech()
    audios = [load(e.path) for e in entries]
    options = TranscribeOptions(language="en", beam_size=1, fallback=False)
    whole = [engine.transcribe(a, options).text for a in audios]
    assert set(spy.frames) == {3000}
    spy.frames.clear()
    fitted = TranscribeOptions(language="en", beam_size=1, fallback=False, fitted_window=True)
    short = [engine.transcribe(a, fitted).text for a in audios]
    expected = [fitted_frames(len(a) / 16_000) or 3000 for a in audios]
    assert spy.frames[: len(audios)] == expected
    assert max(expected) < 3000
    # Read speech: about the same words (measured in int8: 3 of 128 apart, "woodcutters"
    # / "wood cutters" among them; against the human transcripts 2.3 % in 30 s
    # windows, 3.1 % fitted; in float32 3.9 and 2.3 %).
    assert pooled_wer(whole, short) <= 0.05
    assert pooled_wer([e.reference for e in entries], short) <= 0.05
