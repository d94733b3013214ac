"""Every response format from a live server parses by its spec."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import httpx
import pytest

from tests.support import JFK_REFERENCE, LiveServer, normalize

SRT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt_strict(text: str) -> list[tuple[float, float, str]]:
    """SubRip: blocks of index (1, 2, ...), 'start --> end', one or more text lines,
    separated by exactly one blank line."""
    assert text.endswith("\n")
    assert not text.startswith("\n")
    cues = []
    for expected_index, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(expected_index), block
        timing = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert timing, lines[1]
        start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
        assert 0 <= start <= end
        assert len(lines) >= 3, block
        assert all(line.strip() for line in lines[2:]), block
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def parse_vtt_strict(text: str) -> list[tuple[float, float, str]]:
    """WebVTT: the signature line, a blank line, then cues of 'start --> end' and
    text without '-->' or raw '<' / '&'."""
    blocks = text.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        timing = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert timing, lines[0]
        start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
        assert 0 <= start <= end
        payload = lines[1:]
        assert payload, block
        assert all(p.strip() and "-->" not in p for p in payload), block
        assert not re.search(r"<|&(?!amp;|lt;|gt;)", " ".join(payload))
        cues.append((start, end, " ".join(payload)))
    return cues


@pytest.fixture(scope="module")
def server(default_server: LiveServer) -> LiveServer:
    return default_server


def fetch(server: LiveServer, audio: Path, response_format: str, **fields: str) -> httpx.Response:
    with audio.open("rb") as fp:
        response = httpx.post(
            f"{server.url}/transcribe",
            files={"file": (audio.name, fp)},
            data={"response_format": response_format, **fields},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    return response


def test_srt(server: LiveServer, audio_dir: Path) -> None:
    response = fetch(server, audio_dir / "jfk.flac", "srt")
    assert response.headers["content-type"].startswith("application/x-subrip")
    cues = parse_srt_strict(response.text)
    assert normalize(" ".join(c[2] for c in cues)) == normalize(JFK_REFERENCE)
    assert cues[-1][1] <= 11.0


def test_vtt(server: LiveServer, audio_dir: Path) -> None:
    response = fetch(server, audio_dir / "jfk.flac", "vtt")
    assert response.headers["content-type"].startswith("text/vtt")
    cues = parse_vtt_strict(response.text)
    assert normalize(" ".join(c[2] for c in cues)) == normalize(JFK_REFERENCE)


def test_tsv(server: LiveServer, audio_dir: Path) -> None:
    response = fetch(server, audio_dir / "jfk.flac", "tsv")
    rows = list(csv.reader(io.StringIO(response.text), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert all(len(r) == 3 and int(r[0]) <= int(r[1]) for r in rows[1:])
    assert normalize(" ".join(r[2] for r in rows[1:])) == normalize(JFK_REFERENCE)


def test_text(server: LiveServer, audio_dir: Path) -> None:
    response = fetch(server, audio_dir / "jfk.flac", "text")
    assert response.headers["content-type"].startswith("text/plain")
    assert normalize(response.text) == normalize(JFK_REFERENCE)


def test_json(server: LiveServer, audio_dir: Path) -> None:
    body = fetch(server, audio_dir / "jfk.flac", "json").json()
    assert set(body) >= {"text", "language", "language_probability", "duration", "model"}
    assert "segments" not in body


def test_verbose_json_has_segments_and_words_when_asked(
    server: LiveServer, audio_dir: Path
) -> None:
    plain = fetch(server, audio_dir / "jfk.flac", "verbose_json").json()
    assert plain["segments"]
    assert all("words" not in s for s in plain["segments"])
    body = json.loads(
        fetch(server, audio_dir / "jfk.flac", "verbose_json", word_timestamps="true").text
    )
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
