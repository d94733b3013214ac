"""API keys, rate limits and CORS (in-process: the middleware and routes as served)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI, AuthenticationError

from tests.support.fakes import FakeEngine
from tests.support.in_process import BASE_URL, InProcess, serve

pytestmark = pytest.mark.anyio

KEYS = ("alpha-key-1-0123456789", "beta-key-2-0123456789")
FILE_KEY = "gamma-key-from-file"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[InProcess]:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# mounted secret\n{FILE_KEY}\n\n")
    async with serve(
        FakeEngine(),
        auth_required=True,
        api_keys=",".join(KEYS),
        api_keys_file=key_file,
        rate_limit_per_minute=6,
        rate_limit_burst=3,
        cors_origins="https://console.example",
    ) as service:
        yield service


def jfk(audio_dir: Path) -> dict[str, Any]:
    return {"file": ("a.flac", (audio_dir / "jfk.flac").read_bytes())}


async def test_no_key_wrong_key_right_key(secured: InProcess, audio_dir: Path) -> None:
    client = secured.client
    missing = await client.post("/transcribe", files=jfk(audio_dir))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="whisper-service"'
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = await client.post(
        "/transcribe", files=jfk(audio_dir), headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    ok = await client.post(
        "/transcribe", files=jfk(audio_dir), headers={"Authorization": f"Bearer {KEYS[1]}"}
    )
    assert ok.status_code == 200


async def test_key_from_the_mounted_file_and_x_api_key_header(secured: InProcess) -> None:
    response = await secured.client.get("/v1/models", headers={"X-API-Key": FILE_KEY})
    assert response.status_code == 200


async def test_health_is_open_without_a_key(secured: InProcess) -> None:
    for path in ("/health/live", "/health/ready", "/health", "/v2/health/live", "/metrics"):
        assert (await secured.client.get(path)).status_code in (200, 503), path


async def test_openai_sdk_sends_its_key(secured: InProcess, audio_dir: Path) -> None:
    def sdk(key: str) -> AsyncOpenAI:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=secured.app))
        return AsyncOpenAI(base_url=f"{BASE_URL}/v1", api_key=key, max_retries=0, http_client=http)

    with (audio_dir / "jfk.flac").open("rb") as fp:
        result = await sdk(KEYS[0]).audio.transcriptions.create(model="whisper-1", file=fp)
    assert result.text
    with (audio_dir / "jfk.flac").open("rb") as fp, pytest.raises(AuthenticationError):
        await sdk("stolen").audio.transcriptions.create(model="whisper-1", file=fp)


async def test_burst_beyond_the_bucket_is_429_per_client(secured: InProcess) -> None:
    key = {"Authorization": f"Bearer {FILE_KEY}"}
    codes = [await secured.client.get("/v1/models", headers=key) for _ in range(5)]
    assert [r.status_code for r in codes][:3] == [200, 200, 200]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    # another client is not affected, and probes are never limited
    other = await secured.client.get("/v1/models", headers={"X-API-Key": KEYS[0]})
    assert other.status_code == 200
    assert (await secured.client.get("/health/live")).status_code == 200


async def test_cors_preflight(secured: InProcess) -> None:
    allowed = await secured.client.options(
        "/transcribe",
        headers={"Origin": "https://console.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://console.example"
    denied = await secured.client.options(
        "/transcribe",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in denied.headers


async def test_the_live_page_is_served_without_a_key_and_loads_only_its_own_files() -> None:
    async with serve(
        FakeEngine(), auth_required=True, api_keys=KEYS[0], cors_origins="https://console.example"
    ) as service:
        await _check_the_page(service.client)


async def _check_the_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/realtime")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("realtime.js", "pcm16-worklet.js", "realtime.css"):
        answer = await client.get(f"/realtime/{asset}")
        assert answer.status_code == 200, asset
        assert answer.headers["content-security-policy"] == policy
    script = (await client.get("/realtime/realtime.js")).text
    for asset in ("realtime.js", "realtime.css"):
        assert f"/realtime/{asset}" in page.text
    assert "/realtime/pcm16-worklet.js" in script
    assert "openai-insecure-api-key." in script  # the key travels as the subprotocol
    assert "http://" not in page.text + script
    assert "https://" not in page.text + script
    missing = await client.get("/realtime/app.py")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    # Only the page is open: the session and everything else still need the key.
    assert (await client.get("/realtime-other")).status_code == 401
    assert (await client.get("/v1/models")).status_code == 401


@pytest.mark.parametrize("setting", [{"realtime_page": False}, {"realtime_max_sessions": 0}])
async def test_the_live_page_can_be_turned_off(setting: dict[str, Any]) -> None:
    async with serve(FakeEngine(), **setting) as service:
        for path in ("/realtime", "/realtime/realtime.js"):
            assert (await service.client.get(path)).status_code == 404
