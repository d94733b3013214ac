"""Bad inputs get a 4xx with the JSON error, and the service stays ready after each
(in-process: real decoding and limits, a stand-in engine)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support import LONG_AUDIO
from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from tests.support.media import lying_flac, silent_video

pytestmark = pytest.mark.anyio

MAX_UPLOAD = 2 * 1024 * 1024
MAX_SECONDS = 60


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert "/site-packages/" not in response.text


def cases(audio_dir: Path, tmp: Path) -> list[tuple[str, bytes, int, str]]:
    jfk = (audio_dir / "jfk.flac").read_bytes()
    return [
        ("empty.wav", b"", 422, "empty_audio"),
        ("random.mp3", np.random.default_rng(7).bytes(20_000), 415, "undecodable_audio"),
        ("notes.txt", b"this is a text file, not audio\n" * 50, 415, "undecodable_audio"),
        ("truncated.flac", jfk[: len(jfk) // 4], 415, "undecodable_audio"),
        ("video.mp4", silent_video(tmp / "video.mp4").read_bytes(), 415, "no_audio_stream"),
        ("long.flac", lying_flac(tmp / "long.flac", 7200).read_bytes(), 413, "audio_too_long"),
        ("big.wav", (audio_dir / LONG_AUDIO).read_bytes(), 413, "file_too_large"),
    ]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with serve(
        FakeEngine(), max_upload_bytes=MAX_UPLOAD, max_audio_seconds=MAX_SECONDS
    ) as service:
        yield service.client


async def test_each_bad_file_gets_a_clear_4xx_and_the_service_stays_ready(
    client: httpx.AsyncClient, audio_dir: Path, tmp_path: Path
) -> None:
    for name, content, status, code in cases(audio_dir, tmp_path):
        response = await client.post("/transcribe", files={"file": (name, content)})
        assert_error(response, status, code)
        assert response.json()["error"]["param"] == "file", name
        assert (await client.get("/health/ready")).status_code == 200
    ok = await client.post(
        "/transcribe", files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())}
    )
    assert ok.status_code == 200
    assert ok.json()["duration"] == pytest.approx(11.0, abs=0.05)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"beam_size": "0"}, "beam_size"),
        ({"temperature": "1.5"}, "temperature"),
        ({"response_format": "docx"}, "response_format"),
        ({"task": "summarize"}, "task"),
        ({"language": "klingon"}, "language"),
        ({"word_timestamps": "maybe"}, "word_timestamps"),
        ({"language": "de"}, "language"),  # the engine is English-only
        ({"task": "translate"}, "task"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.AsyncClient, audio_dir: Path, fields: dict[str, str], param: str
) -> None:
    response = await client.post(
        "/transcribe",
        files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
        data=fields,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_missing_file_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/transcribe", data={"language": "en"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


async def test_declared_oversize_body_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    sent: list[int] = []

    async def a_gigabyte() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"\0" * 1_000_000

    response = await client.post(
        "/transcribe",
        content=a_gigabyte(),
        headers={
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(1_000_000_000),
        },
    )
    assert_error(response, 413, "file_too_large")
    assert response.json()["error"]["message"] == (
        f"Maximum content size limit ({MAX_UPLOAD}) exceeded (1000000000 bytes declared)"
    )
    assert response.headers["connection"] == "close"
    assert len(sent) <= 1, "the body was read before refusing it"


async def test_undeclared_oversize_body_stops_at_the_limit(client: httpx.AsyncClient) -> None:
    sent: list[int] = []

    async def chunked() -> AsyncIterator[bytes]:
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n\r\n"
        for _ in range(100):
            sent.append(1)
            yield b"\0" * 100_000

    response = await client.post(
        "/transcribe",
        content=chunked(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert_error(response, 413, "file_too_large")
    # OpenAI's words, so clients written against it recognise the refusal.
    message = response.json()["error"]["message"]
    assert re.fullmatch(
        rf"Maximum content size limit \({MAX_UPLOAD}\) exceeded \(\d+ bytes read\)", message
    )
    # The limit is 2 MiB plus 1 MiB of form overhead: the stream stops there, not at 10 MB.
    assert len(sent) < 40


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-request-id"]


async def test_caller_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
