"""The official openai SDK, unchanged, against live servers."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.support import (
    AUDIO,
    JFK_MAX_WER,
    JFK_REFERENCE,
    LiveServer,
    assert_jfk,
    assert_transcript,
    manifest,
    normalize,
)

JFK = AUDIO / "jfk.flac"
ENGLISH_WORDS = {"the", "a", "of", "and", "to", "in", "is", "was", "this", "it", "as", "for"}
GERMAN_WORDS = {"der", "die", "das", "diesem", "wurde", "als", "und", "ist"}


# The SDK marks translations deprecated; the endpoint is still part of its contract.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def client(default_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{default_server.url}/v1", api_key="not-checked", max_retries=0)


@pytest.fixture(scope="module")
def multilingual_client(multilingual_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{multilingual_server.url}/v1", api_key="not-checked", max_retries=0)


def test_json(client: OpenAI, audio_dir: Path) -> None:
    with JFK.open("rb") as fp:
        result = client.audio.transcriptions.create(model="whisper-1", file=fp)
    assert_jfk(result.text)


def test_text(client: OpenAI, audio_dir: Path) -> None:
    with JFK.open("rb") as fp:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=fp, response_format="text"
        )
    assert isinstance(result, str)
    assert_jfk(result)


def test_srt(client: OpenAI, audio_dir: Path) -> None:
    with JFK.open("rb") as fp:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=fp, response_format="srt"
        )
    assert isinstance(result, str)
    assert result.startswith("1\n00:00:00,000 --> ")


def test_verbose_json_with_word_timestamps(client: OpenAI, audio_dir: Path) -> None:
    with JFK.open("rb") as fp:
        result = client.audio.transcriptions.create(
            model="tiny.en",
            file=fp,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert result.language == "english"
    assert result.duration == pytest.approx(11.0, abs=0.05)
    assert result.segments
    assert result.segments[0].start == 0.0
    assert result.words is not None
    assert len(result.words) >= 20
    assert all(w.start <= w.end for w in result.words)
    assert_transcript(" ".join(w.word for w in result.words), JFK_REFERENCE, JFK_MAX_WER)


def test_unknown_model_is_a_404_the_sdk_does_not_retry(client: OpenAI, audio_dir: Path) -> None:
    with JFK.open("rb") as fp, pytest.raises(openai.NotFoundError) as info:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=fp)
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_translation_on_english_only_model_is_a_clear_400(client: OpenAI, audio_dir: Path) -> None:
    with (
        (audio_dir / "non_en" / "picovoice_test_de.wav").open("rb") as fp,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.audio.translations.create(model="whisper-1", file=fp)
    assert "English-only" in str(info.value)


def test_translation_reaches_its_endpoint_and_answers_in_english(
    multilingual_client: OpenAI, audio_dir: Path
) -> None:
    with (audio_dir / "non_en" / "picovoice_test_de.wav").open("rb") as fp:
        result = multilingual_client.audio.translations.create(model="whisper-1", file=fp)
    words = normalize(result.text).split()
    # English, not German: common English words appear, German ones do not.
    assert sum(w in ENGLISH_WORDS for w in words) >= 2, result.text
    assert not set(words) & GERMAN_WORDS, result.text


def test_german_transcription_with_the_multilingual_model(
    multilingual_client: OpenAI, audio_dir: Path
) -> None:
    with (audio_dir / "non_en" / "picovoice_test_de.wav").open("rb") as fp:
        result = multilingual_client.audio.transcriptions.create(
            model="whisper-1", file=fp, response_format="verbose_json"
        )
    assert result.language == "german"
    reference = next(e for e in manifest() if e.language == "de").reference
    # base scores 0.2 here; the bound tells German from anything else.
    assert_transcript(result.text, reference, 0.4, language="de")
