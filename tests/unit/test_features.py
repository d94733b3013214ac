"""Block-wise log-Mel features equal the engines' own, whatever the length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from faster_whisper.feature_extractor import FeatureExtractor

from whisper_service.audio import decode_audio
from whisper_service.engines.features import BLOCK_FRAMES, BlockwiseFeatureExtractor
from whisper_service.engines.openai_whisper_engine import blockwise_log_mel

# Around every edge: shorter than the FFT window, one block, one block and a sample.
LENGTHS = [1, 39, 399, 400, 16_000, 160 * BLOCK_FRAMES - 1, 160 * BLOCK_FRAMES + 1, 1_000_003]


@pytest.fixture(scope="module")
def speech(audio_dir: Path) -> np.ndarray:
    long = decode_audio(audio_dir / "long" / "gwbush_radio_address_2008-11-01.wav", max_seconds=600)
    return np.resize(long.samples, max(LENGTHS))


@pytest.mark.parametrize("length", LENGTHS)
def test_faster_whisper_features(speech: np.ndarray, length: int) -> None:
    audio = speech[:length]
    for chunk_length in (None, 30):
        expected = FeatureExtractor(feature_size=80)(audio, chunk_length=chunk_length)
        actual = BlockwiseFeatureExtractor(feature_size=80)(audio, chunk_length=chunk_length)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("length", LENGTHS)
def test_openai_whisper_features(speech: np.ndarray, length: int) -> None:
    audio = torch.from_numpy(np.ascontiguousarray(speech[:length]))
    paddings = [whisper.audio.N_SAMPLES] if length < 400 else [0, whisper.audio.N_SAMPLES]
    for padding in paddings:
        expected = whisper.audio.log_mel_spectrogram(audio, 80, padding=padding)
        actual = blockwise_log_mel(audio, 80, padding=padding)
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_openai_whisper_transcribe_uses_the_blockwise_spectrogram() -> None:
    import whisper.transcribe

    assert whisper.transcribe.log_mel_spectrogram is blockwise_log_mel
