"""Every OpenAI transcription parameter is honoured or refused out loud: unknown fields
as OpenAI refuses them, the ones Whisper cannot honour with a message saying so, and
chunking_strategy mapped onto the VAD (in-process, a stand-in engine that remembers
the options it was given)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from whisper_service.engines import VadSettings

pytestmark = pytest.mark.anyio

TRANSCRIPTIONS = "/v1/audio/transcriptions"
VOICE = "data:audio/wav;base64," + base64.b64encode(b"RIFF....WAVE").decode()
DIARIZED = ("response_format", "diarized_json")


async def post(
    audio_dir: Path, fields: list[tuple[str, str]], path: str = TRANSCRIPTIONS, **settings: Any
) -> tuple[int, dict[str, Any], FakeEngine]:
    engine = FakeEngine()
    data: dict[str, list[str]] = {}
    for name, value in fields:  # repeated fields, as the SDK sends lists
        data.setdefault(name, []).append(value)
    async with serve(engine, **settings) as service:
        with (audio_dir / "jfk.flac").open("rb") as fp:
            response = await service.client.post(path, files={"file": ("jfk.flac", fp)}, data=data)
    return response.status_code, response.json(), engine


@pytest.mark.parametrize(
    ("fields", "code", "param", "says"),
    [
        ([("temprature", "0.2")], "unknown_parameter", "temprature", "Unrecognized request"),
        ([("keywords[]", "Ünal")], "unsupported_option", "keywords", "gpt-transcribe"),
        ([("languages[]", "en")], "unsupported_option", "languages", "gpt-transcribe"),
        ([("response_format", "diarized_json"), ("prompt", "Hello")], "invalid_parameter",
         "prompt", "diarization"),
        ([("response_format", "diarized_json"), ("include[]", "logprobs")],
         "invalid_parameter", "include", "diarized_json"),
        ([("known_speaker_names[]", "agent"), ("known_speaker_references[]", VOICE)],
         "invalid_parameter", "known_speaker_names", "diarized_json"),
        ([DIARIZED, ("known_speaker_names[]", "agent")], "invalid_parameter",
         "known_speaker_references", "pair up"),
        ([DIARIZED, *[("known_speaker_names[]", n) for n in "abcde"]]
         + [("known_speaker_references[]", VOICE)] * 5,
         "invalid_parameter", "known_speaker_names", "at most 4"),
        ([DIARIZED, ("known_speaker_names[]", "agent"), ("known_speaker_references[]", "hello")],
         "invalid_parameter", "known_speaker_references", "data URL"),
        ([DIARIZED, ("known_speaker_names[]", "agent"), ("known_speaker_references[]", VOICE)],
         "invalid_parameter", "known_speaker_references", "not usable audio"),
        ([DIARIZED, ("known_speaker_names[]", "a"), ("known_speaker_names[]", "a"),
          ("known_speaker_references[]", VOICE), ("known_speaker_references[]", VOICE)],
         "invalid_parameter", "known_speaker_names", "distinct"),
        ([("include[]", "logprobs"), ("response_format", "srt")], "invalid_parameter",
         "include", "response_format=json"),
        ([("include[]", "tokens")], "invalid_parameter", "include[].0", "logprobs"),
        ([("chunking_strategy", "{not json")], "invalid_parameter", "chunking_strategy",
         "server_vad"),
        ([("chunking_strategy", '{"type": "semantic_vad"}')], "invalid_parameter",
         "chunking_strategy.type", "server_vad"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "2")],
         "invalid_parameter", "chunking_strategy.threshold", "less than or equal to 1"),
        ([("chunking_strategy", "auto"), ("chunking_strategy[type]", "server_vad")],
         "invalid_parameter", "chunking_strategy", "not both"),
        ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[eagerness]", "high")],
         "unknown_parameter", "chunking_strategy.eagerness", "Unrecognized request"),
    ],
)  # fmt: skip
async def test_what_cannot_be_honoured_is_a_400_naming_it(
    audio_dir: Path, fields: list[tuple[str, str]], code: str, param: str, says: str
) -> None:
    status, body, engine = await post(audio_dir, fields)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["param"] == param
    assert says in body["error"]["message"]
    assert engine.calls == 0


async def test_translations_refuse_transcription_only_fields(audio_dir: Path) -> None:
    for field in ("language", "include[]", "chunking_strategy"):
        status, body, _ = await post(audio_dir, [(field, "auto")], path="/v1/audio/translations")
        assert status == 400
        assert body["error"] == body["error"] | {"code": "unknown_parameter", "param": field}


@pytest.mark.parametrize(
    ("fields", "vad"),
    [
        ([("chunking_strategy", "auto")], VadSettings()),
        # curl: a JSON object; the fields it leaves out take OpenAI's server_vad defaults
        ([("chunking_strategy", json.dumps({"type": "server_vad", "threshold": 0.6}))],
         VadSettings(threshold=0.6, min_silence_ms=500, speech_pad_ms=300)),
        # the openai SDK: bracketed fields
        ([("chunking_strategy[type]", "server_vad"),
          ("chunking_strategy[silence_duration_ms]", "800"),
          ("chunking_strategy[prefix_padding_ms]", "100")],
         VadSettings(threshold=0.5, min_silence_ms=800, speech_pad_ms=100)),
    ],
)  # fmt: skip
async def test_chunking_strategy_becomes_the_vad_settings(
    audio_dir: Path, fields: list[tuple[str, str]], vad: VadSettings
) -> None:
    status, body, engine = await post(audio_dir, fields)
    assert status == 200, body
    assert engine.last_options is not None
    assert engine.last_options.vad_filter
    assert engine.last_options.vad == vad


async def test_without_chunking_strategy_the_audio_is_not_cut(audio_dir: Path) -> None:
    status, _, engine = await post(audio_dir, [("stream", "false")])
    assert status == 200
    assert engine.last_options is not None
    assert not engine.last_options.vad_filter


async def test_limits_are_in_the_models_metadata_and_the_413(audio_dir: Path) -> None:
    limit = 2 * 1024 * 1024
    async with serve(FakeEngine(), max_upload_bytes=limit, max_audio_seconds=60) as service:
        models = (await service.client.get("/v1/models")).json()["data"]
        too_big = await service.client.post(
            TRANSCRIPTIONS, files={"file": ("big.wav", b"\0" * (limit + 1))}
        )
    assert {m["max_upload_bytes"] for m in models} == {limit}
    assert {m["max_audio_seconds"] for m in models} == {60}
    assert too_big.status_code == 413
    error = too_big.json()["error"]
    assert (
        error["message"]
        == f"Maximum content size limit ({limit}) exceeded ({limit + 1} bytes read)"
    )
    assert error["code"] == "file_too_large"


@pytest.mark.parametrize(
    "fields",
    [
        [("include[]", "logprobs")],  # the openai SDK
        [("include", "logprobs")],  # curl
        [("timestamp_granularities", "word"), ("response_format", "verbose_json")],
    ],
)
async def test_lists_are_read_with_or_without_brackets(
    audio_dir: Path, fields: list[tuple[str, str]]
) -> None:
    status, body, engine = await post(audio_dir, fields)
    assert status == 200, body
    assert engine.last_options is not None
    assert engine.last_options.word_timestamps
