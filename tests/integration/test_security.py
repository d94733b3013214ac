"""API keys, rate limits and CORS on a live server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from tests.support import LiveServer

KEYS = ("alpha-key-1", "beta-key-2")
FILE_KEY = "gamma-key-from-file"


@pytest.fixture(scope="module")
def secured(
    server_factory: Callable[..., LiveServer], tmp_path_factory: pytest.TempPathFactory
) -> LiveServer:
    key_file = tmp_path_factory.mktemp("secrets") / "keys"
    key_file.write_text(f"# mounted secret\n{FILE_KEY}\n\n")
    return server_factory(
        WHISPER_AUTH_REQUIRED="true",
        WHISPER_API_KEYS=",".join(KEYS),
        WHISPER_API_KEYS_FILE=str(key_file),
        WHISPER_RATE_LIMIT_PER_MINUTE="6",
        WHISPER_RATE_LIMIT_BURST="3",
        WHISPER_CORS_ORIGINS="https://console.example",
    )


def test_no_key_wrong_key_right_key(secured: LiveServer, audio_dir: Path) -> None:
    url = f"{secured.url}/transcribe"
    audio = (audio_dir / "jfk.flac").read_bytes()
    missing = httpx.post(url, files={"file": ("a.flac", audio)})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="whisper-service"'
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = httpx.post(
        url, files={"file": ("a.flac", audio)}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    ok = httpx.post(
        url, files={"file": ("a.flac", audio)}, headers={"Authorization": f"Bearer {KEYS[1]}"}
    )
    assert ok.status_code == 200
    assert "country" in ok.json()["text"]


def test_key_from_the_mounted_file_and_x_api_key_header(secured: LiveServer) -> None:
    response = httpx.get(f"{secured.url}/v1/models", headers={"X-API-Key": FILE_KEY})
    assert response.status_code == 200


def test_health_is_open_without_a_key(secured: LiveServer) -> None:
    for path in ("/health/live", "/health/ready", "/health", "/v2/health/live"):
        assert httpx.get(f"{secured.url}{path}").status_code in (200, 503), path
        assert httpx.get(f"{secured.url}{path}").status_code != 401, path


def test_openai_sdk_sends_its_key(secured: LiveServer, audio_dir: Path) -> None:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        text = (
            OpenAI(base_url=f"{secured.url}/v1", api_key=KEYS[0], max_retries=0)
            .audio.transcriptions.create(model="whisper-1", file=fp)
            .text
        )
    assert "country" in text
    with (audio_dir / "jfk.flac").open("rb") as fp, pytest.raises(AuthenticationError):
        OpenAI(
            base_url=f"{secured.url}/v1", api_key="stolen", max_retries=0
        ).audio.transcriptions.create(model="whisper-1", file=fp)


def test_burst_beyond_the_bucket_is_429_per_client(secured: LiveServer) -> None:
    # A key no other test uses, so its bucket starts full.
    key = {"Authorization": f"Bearer {FILE_KEY}"}
    codes = [httpx.get(f"{secured.url}/v1/models", headers=key) for _ in range(5)]
    assert [r.status_code for r in codes][:1] == [200]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    # another client is not affected, and probes are never limited
    assert httpx.get(f"{secured.url}/health/live").status_code == 200


def test_cors_preflight(secured: LiveServer) -> None:
    allowed = httpx.options(
        f"{secured.url}/transcribe",
        headers={"Origin": "https://console.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://console.example"
    denied = httpx.options(
        f"{secured.url}/transcribe",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in denied.headers
