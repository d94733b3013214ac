"""/v1/models and the OpenAI routes' own checks (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio


async def test_models_lists_the_loaded_model_and_its_alias() -> None:
    async with serve(FakeEngine(model_name="tiny.en")) as service:
        body = (await service.client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny.en", "whisper-1"]
    for card in body["data"]:
        assert card["object"] == "model"
        assert card["root"] == "tiny.en"
        assert card["loaded"] is True
        assert card["multilingual"] is False


async def test_an_unknown_model_is_404_and_granularities_need_verbose_json(
    audio_dir: Path,
) -> None:
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve() as service:
        unknown = await service.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.flac", audio)},
            data={"model": "gpt-9"},
        )
        plain = await service.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.flac", audio)},
            data={"model": "whisper-1", "timestamp_granularities[]": "word"},
        )
        verbose = await service.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.flac", audio)},
            data={
                "model": "whisper-1",
                "response_format": "verbose_json",
                "timestamp_granularities[]": "word",
            },
        )
    assert unknown.status_code == 404
    assert unknown.json()["error"] | {"request_id": None} == {
        "message": "the model 'gpt-9' is not served here; available: fake.en, whisper-1",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
        "request_id": None,
    }
    assert plain.status_code == 400
    assert plain.json()["error"]["param"] == "timestamp_granularities"
    body = verbose.json()
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert [w["word"] for w in body["words"]][:2] == ["The", "quick"]
    assert all("words" not in s for s in body["segments"])


async def test_detect_language_needs_a_multilingual_model(audio_dir: Path) -> None:
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve() as service:
        english_only = await service.client.post(
            "/detect-language", files={"file": ("a.flac", audio)}
        )
    async with serve(FakeEngine(multilingual=True, language="es")) as service:
        detected = await service.client.post(
            "/detect-language", files={"file": ("a.flac", audio)}, data={"top": "2"}
        )
    assert english_only.status_code == 400
    assert english_only.json()["error"]["code"] == "unsupported_option"
    body = detected.json()
    assert (body["language"], body["language_name"]) == ("es", "spanish")
    assert [c["language"] for c in body["top"]] == ["es", "de"]
    assert body["duration"] == pytest.approx(11.0, abs=0.05)
