"""Bad inputs get a 4xx with the JSON error, and the server stays healthy after each."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.media import lying_flac, silent_video
from tests.support import LONG_AUDIO, LiveServer

MAX_UPLOAD = 2 * 1024 * 1024
MAX_SECONDS = 60


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(
        WHISPER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD), WHISPER_MAX_AUDIO_SECONDS=str(MAX_SECONDS)
    )


def post(server: LiveServer, name: str, content: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/transcribe", files={"file": (name, content)}, data=fields, timeout=120
    )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert "/site-packages/" not in response.text


def assert_healthy(server: LiveServer) -> None:
    assert server.alive()
    assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200


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


def test_each_bad_file_gets_a_clear_4xx_and_the_server_survives(
    server: LiveServer, audio_dir: Path, tmp_path: Path
) -> None:
    for name, content, status, code in cases(audio_dir, tmp_path):
        response = post(server, name, content)
        assert_error(response, status, code)
        assert_healthy(server)
    # and it still transcribes
    ok = post(server, "jfk.flac", (audio_dir / "jfk.flac").read_bytes())
    assert ok.status_code == 200
    assert "country" in ok.json()["text"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"beam_size": "0"}, "beam_size"),
        ({"temperature": "1.5"}, "temperature"),
        ({"response_format": "docx"}, "response_format"),
        ({"task": "summarize"}, "task"),
        ({"language": "klingon"}, "language"),
        ({"word_timestamps": "maybe"}, "word_timestamps"),
        ({"language": "de"}, "language"),  # tiny.en is English-only
        ({"task": "translate"}, "task"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    server: LiveServer, audio_dir: Path, fields: dict[str, str], param: str
) -> None:
    response = post(server, "jfk.flac", (audio_dir / "jfk.flac").read_bytes(), **fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_missing_file_is_400(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/transcribe", data={"language": "en"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_declared_oversize_body_is_refused_before_reading(server: LiveServer) -> None:
    # A raw socket: HTTP clients refuse to declare a length they will not send. The
    # server must answer without waiting for the 1 GB it was promised.
    head = (
        "POST /transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 1000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"--x\r\n")
        reply = b""
        while b"}}" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head_bytes, _, body = reply.partition(b"\r\n\r\n")
    assert head_bytes.split()[1] == b"413", reply
    assert b"x-request-id:" in head_bytes.lower()
    assert json.loads(body)["error"]["code"] == "file_too_large"


def test_unknown_route_is_json_404(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-request-id"]


def test_caller_request_id_is_echoed(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
