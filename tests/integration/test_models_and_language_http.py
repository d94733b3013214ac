"""/v1/models, /detect-language and the probes on live servers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, manifest


def test_models_lists_the_loaded_model_and_its_alias(default_server: LiveServer) -> None:
    body = httpx.get(f"{default_server.url}/v1/models", timeout=10).json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["tiny.en", "whisper-1"]
    assert all(m["loaded"] and m["engine"] == "faster-whisper" for m in body["data"])
    assert body["data"][0]["multilingual"] is False


def test_probes(default_server: LiveServer) -> None:
    assert httpx.get(f"{default_server.url}/health/live").json() == {"status": "alive"}
    ready = httpx.get(f"{default_server.url}/health/ready").json()
    assert ready["status"] == "ready"
    assert ready["model_loaded"] is True


@pytest.mark.parametrize("language", ["de", "es", "fr"])
def test_detect_language_on_real_speech(multilingual_server: LiveServer, language: str) -> None:
    entry = next(e for e in manifest() if e.language == language)
    with entry.path.open("rb") as fp:
        response = httpx.post(
            f"{multilingual_server.url}/detect-language",
            files={"file": (entry.path.name, fp)},
            data={"top": "3"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == language
    assert len(body["top"]) == 3
    assert body["top"][0]["language"] == language
    probabilities = [t["probability"] for t in body["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.5 < body["probability"] <= 1.0


def test_detect_language_needs_a_multilingual_model(
    default_server: LiveServer, audio_dir: Path
) -> None:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        response = httpx.post(
            f"{default_server.url}/detect-language", files={"file": ("jfk.flac", fp)}, timeout=60
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_option"


def test_multilingual_transcription_detects_the_language(
    multilingual_server: LiveServer, audio_dir: Path
) -> None:
    entry = next(e for e in manifest() if e.language == "fr")
    with entry.path.open("rb") as fp:
        response = httpx.post(
            f"{multilingual_server.url}/transcribe",
            files={"file": (entry.path.name, fp)},
            timeout=60,
        )
    body = response.json()
    assert body["language"] == "fr"
    assert body["language_probability"] > 0.5
    assert "consul" in body["text"].lower()
