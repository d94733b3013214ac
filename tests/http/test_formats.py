"""Every response format over HTTP parses by its spec, even for text that could break
a cue (in-process, a stand-in engine saying awkward things; that the real model's
words arrive in each format is in tests/integration/test_transcription_http.py)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import httpx
import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from tests.support.subtitles import parse_srt_strict, parse_vtt_strict

pytestmark = pytest.mark.anyio

LINES = ("Tom & Jerry <live>", "first\n\nsecond --> third", "tab\there")


async def fetch(audio_dir: Path, response_format: str, **fields: str) -> httpx.Response:
    async with serve(FakeEngine(lines=LINES)) as service:
        response = await service.client.post(
            "/transcribe",
            files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
            data={"response_format": response_format, **fields},
        )
    assert response.status_code == 200, response.text
    return response


async def test_srt(audio_dir: Path) -> None:
    response = await fetch(audio_dir, "srt")
    assert response.headers["content-type"].startswith("application/x-subrip")
    cues = parse_srt_strict(response.text)
    assert [c[2] for c in cues] == ["Tom & Jerry <live>", "first second -> third", "tab\there"]
    assert cues[-1][1] <= 11.0


async def test_vtt(audio_dir: Path) -> None:
    response = await fetch(audio_dir, "vtt")
    assert response.headers["content-type"].startswith("text/vtt")
    cues = parse_vtt_strict(response.text)
    assert cues[0][2] == "Tom &amp; Jerry &lt;live&gt;"
    assert len(cues) == 3


async def test_tsv(audio_dir: Path) -> None:
    response = await fetch(audio_dir, "tsv")
    assert response.headers["content-type"].startswith("text/tab-separated-values")
    rows = list(csv.reader(io.StringIO(response.text), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert len(rows) == 4
    assert all(len(r) == 3 and int(r[0]) <= int(r[1]) for r in rows[1:])


async def test_text(audio_dir: Path) -> None:
    response = await fetch(audio_dir, "text")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("Tom & Jerry <live>")
    assert response.text.endswith("\n")


async def test_json(audio_dir: Path) -> None:
    body = (await fetch(audio_dir, "json")).json()
    assert set(body) == {
        "text", "language", "language_probability", "duration", "model", "engine",
        "processing_seconds", "usage",
    }  # fmt: skip
    assert body["model"] == "fake.en"
    # OpenAI's usage for Whisper: seconds of audio, rounded up
    assert body["usage"] == {"type": "duration", "seconds": math.ceil(body["duration"])}


async def test_verbose_json_has_segments_and_words_when_asked(audio_dir: Path) -> None:
    plain = (await fetch(audio_dir, "verbose_json")).json()
    assert plain["segments"]
    assert all("words" not in s for s in plain["segments"])
    body = (await fetch(audio_dir, "verbose_json", word_timestamps="true")).json()
    segment_keys = {
        "id", "seek", "start", "end", "text", "tokens", "temperature",
        "avg_logprob", "compression_ratio", "no_speech_prob", "words",
    }  # fmt: skip
    for i, segment in enumerate(body["segments"]):
        assert set(segment) == segment_keys
        assert segment["id"] == i
        assert segment["words"], segment
        assert all(set(w) == {"word", "start", "end", "probability"} for w in segment["words"])
    assert body["task"] == "transcribe"
