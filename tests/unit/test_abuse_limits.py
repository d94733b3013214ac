"""Token buckets, API-key checks and settings rules for shutdown and auth."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from whisper_service.api.middleware.auth import ApiKeyMiddleware, KeyIds, presented_key
from whisper_service.api.middleware.rate_limit import (
    MAX_TRACKED_CLIENTS,
    RateLimitMiddleware,
    TokenBucket,
)
from whisper_service.config import SettingsError, load_settings


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0


def test_rate_limiter_forgets_the_oldest_client() -> None:
    limiter = RateLimitMiddleware(ok_app, per_minute=60, burst=1)
    for i in range(MAX_TRACKED_CLIENTS + 1):
        limiter.wait_for(f"ip:{i}", now=0.0)
    assert len(limiter._buckets) == MAX_TRACKED_CLIENTS
    assert "ip:0" not in limiter._buckets
    assert limiter.wait_for("ip:1", now=0.0) > 0  # still remembered: empty bucket


def test_presented_key_forms() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> Scope:
        return {"headers": list(headers)}

    assert presented_key(scope((b"authorization", b"Bearer  k1 "))) == "k1"
    assert presented_key(scope((b"x-api-key", b"k2"))) == "k2"
    assert presented_key(scope((b"authorization", b"Basic abc"))) is None
    both = scope((b"authorization", b"Bearer id-token"), (b"x-api-key", b"k3"))
    assert presented_key(both) == "k3"  # Cloud Run IAM: the ID token is not the key
    assert presented_key(scope()) is None


def test_health_can_be_closed_too() -> None:
    async def scenario() -> tuple[int, int, int]:
        app = ApiKeyMiddleware(
            ok_app,
            keys=["k"],
            admin_keys=[],
            key_ids=KeyIds(None, ["k"]),
            public_probes=False,
            failures_per_minute=0,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            closed = (await client.get("/health/live")).status_code
            keyed = (await client.get("/health/live", headers={"X-API-Key": "k"})).status_code
            preflight = (await client.options("/transcribe")).status_code
        return closed, keyed, preflight

    assert asyncio.run(scenario()) == (401, 200, 200)


def test_drain_must_fit_the_platform_grace() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(drain_timeout_seconds=9.0, platform_grace_seconds=10.0)
    assert "WHISPER_DRAIN_TIMEOUT_SECONDS=9" in str(info.value)
    assert "WHISPER_PLATFORM_GRACE_SECONDS=10" in str(info.value)
    settings = load_settings(drain_timeout_seconds=8.0)
    assert settings.graceful_timeout_seconds == 10  # the platform's grace
    quick = load_settings(drain_timeout_seconds=2.0)
    assert quick.graceful_timeout_seconds == 10  # not 4: gunicorn must not kill first


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(SettingsError, match="WHISPER_HEALTH_MEMORY_DEGRADED_PERCENT"):
        load_settings(health_memory_degraded_percent=95, health_memory_unhealthy_percent=90)


def test_auth_required_needs_a_key_only_to_serve(tmp_path: object) -> None:
    settings = load_settings(auth_required=True)
    with pytest.raises(SettingsError, match="no API key"):
        settings.check_servable()
    load_settings(auth_required=True, api_keys="a" * 16 + "," + "b" * 16).check_servable()


def test_api_keys_have_a_minimum_length_and_are_never_printed() -> None:
    settings = load_settings(api_keys="long-enough-key-1,shortkey")
    with pytest.raises(SettingsError) as info:
        settings.check_servable()
    assert "1 API key(s) shorter than 16 characters (lengths 8)" in str(info.value)
    assert "shortkey" not in str(info.value)
    with pytest.raises(SettingsError, match="WHISPER_ADMIN_API_KEYS"):
        load_settings(admin_api_keys="tiny").check_servable()


def test_key_ids_are_keyed_hashes_stable_for_a_deployment() -> None:
    keys = ["k" * 20, "m" * 20]
    by_secret = KeyIds("deployment-secret", keys)
    assert by_secret.of(keys[0]) == KeyIds("deployment-secret", keys[:1]).of(keys[0])
    assert by_secret.of(keys[0]) != KeyIds("another-secret", keys).of(keys[0])
    unsalted = "key:" + hashlib.sha256(keys[0].encode()).hexdigest()[:12]
    assert by_secret.of(keys[0]) != unsalted  # nothing a key list can be checked against
    derived = KeyIds(None, keys)
    assert derived.of(keys[0]) == KeyIds(None, list(reversed(keys))).of(keys[0])
    assert derived.of(keys[0]) != derived.of(keys[1])


def test_forwarded_for_is_believed_only_from_listed_proxies() -> None:
    with pytest.raises(SettingsError, match="would believe any X-Forwarded-For"):
        load_settings(forwarded_allow_ips="*")
    with pytest.raises(SettingsError, match="not an address or network"):
        load_settings(forwarded_allow_ips="10.0.0.0/8,proxy.internal")
    assert load_settings(app_env="production").forwarded_allow_ips == "169.254.0.0/16"
