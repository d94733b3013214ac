"""Who is who: server-made request ids, what /health and /metrics show to whom, and
the limit on failed authentication (in-process)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio

CALLER = "caller-key-0123456789"
ADMIN = "admin-key-0123456789"
KEYS = {"api_keys": CALLER, "admin_api_keys": ADMIN}


async def test_the_callers_request_id_is_echoed_but_never_a_key(audio_dir: Path) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    audio = (audio_dir / "jfk.flac").read_bytes()
    same = {"X-Request-ID": "same-id-from-two-callers"}
    async with serve(engine, inference_workers=2) as service:
        client = service.client
        first, second = (
            asyncio.create_task(
                client.post("/transcribe", files={"file": ("a", audio)}, headers=same)
            )
            for _ in range(2)
        )
        for _ in range(500):
            if len(service.runtime.in_flight) == 2:
                break
            await asyncio.sleep(0.01)
        # Both are tracked, each under an id of the server's: one cannot unregister the
        # other (the drain would neither wait for nor cancel it).
        report = (await client.get("/health")).json()
        ids = [r["request_id"] for r in report["in_flight"]]
        assert len(set(ids)) == 2
        assert "same-id-from-two-callers" not in ids
        release.set()
        for response in (await first, await second):
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "same-id-from-two-callers"
        bad = await client.post("/transcribe", data={"language": "en"}, headers=same)
        assert bad.headers["x-request-id"] == "same-id-from-two-callers"
        assert bad.json()["error"]["request_id"] not in (None, "same-id-from-two-callers")


async def test_health_shows_internals_to_admin_keys_only(tmp_path: Path) -> None:
    async with serve(jobs_store=str(tmp_path / "store"), **KEYS) as service:
        anonymous = (await service.client.get("/health")).json()
        caller = (await service.client.get("/health", headers={"X-API-Key": CALLER})).json()
        admin = (await service.client.get("/health", headers={"X-API-Key": ADMIN})).json()
        wrong = await service.client.get("/health", headers={"X-API-Key": "x" * 20})
    for report in (anonymous, caller):
        assert "in_flight" not in report
        assert "pid" not in report
        assert "store" not in report["jobs"]
        assert "instance" not in report["jobs"]
        assert report["in_flight_count"] == 0
    assert admin["in_flight"] == []
    assert isinstance(admin["pid"], int)
    assert admin["jobs"]["store"] == str(tmp_path / "store")
    assert wrong.status_code in (200, 503)  # probes stay open; a wrong key is just nobody
    assert "in_flight" not in wrong.json()


async def test_without_any_key_the_operator_is_everyone() -> None:
    async with serve() as service:
        report = (await service.client.get("/health")).json()
    assert report["in_flight"] == []
    assert "pid" in report


async def test_metrics_access_key_and_port() -> None:
    async with serve(metrics_access="key", **KEYS) as service:
        client = service.client
        anonymous = await client.get("/metrics")
        caller = await client.get("/metrics", headers={"X-API-Key": CALLER})
        admin = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    assert caller.status_code == 403
    assert caller.json()["error"]["code"] == "admin_key_required"
    assert admin.status_code == 200
    assert "whisper_http_requests_total" in admin.text
    port = free_port()
    async with serve(metrics_access="port", metrics_port=port, host="127.0.0.1") as service:
        assert (await service.client.get("/metrics")).status_code == 404
        # This one process (no gunicorn master) serves them on their own port.
        scrape = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scrape.status_code == 200
        assert "whisper_build_info" in scrape.text


async def test_an_address_that_keeps_failing_authentication_is_held_off() -> None:
    async with serve(auth_failures_per_minute=3, **KEYS) as service:
        client = service.client
        codes = [
            (await client.get("/v1/models", headers={"X-API-Key": f"guess-{i:015d}"})).status_code
            for i in range(5)
        ]
        assert codes == [401, 401, 401, 429, 429]
        # Even the right key waits now: guessing cannot go on at the service's speed.
        held = await client.get("/v1/models", headers={"X-API-Key": CALLER})
        assert held.status_code == 429
        assert held.json()["error"]["code"] == "rate_limited"
        assert int(held.headers["retry-after"]) >= 1
        # Probes keep answering for the platform.
        assert (await client.get("/health/live")).status_code == 200
