"""Health report, probes and the memory guard (in-process; the liveness of a server
whose CPUs are saturated by real inference is in tests/integration/test_liveness_under_load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio

CHECKS = {"cpu", "memory", "model", "event_loop", "disk"}


async def test_full_report_shape() -> None:
    async with serve() as service:
        response = await service.client.get("/health")
    report = response.json()
    assert response.status_code == (503 if report["status"] == "unhealthy" else 200)
    assert set(report["checks"]) == CHECKS
    for name, check in report["checks"].items():
        assert check["status"] in ("healthy", "degraded", "unhealthy"), name
        assert check["message"], name
        assert set(check["threshold"]) == {"degraded", "unhealthy"}, name
        if name in ("model", "disk"):
            assert check["trend"] is None, name
    assert report["checks"]["model"]["status"] == "healthy"
    assert report["checks"]["memory"]["trend"]["samples"] >= 1
    assert isinstance(report["checks"]["memory"]["trend"]["samples"], int)
    for key in ("version", "engine", "model", "uptime_seconds", "queue", "in_flight", "jobs"):
        assert key in report, key
    assert report["draining"] is False
    assert report["model_loaded"] is True
    assert report["model"] == "fake.en"
    assert report["jobs"] is None


async def test_probes_and_kserve_aliases() -> None:
    async with serve() as service:
        client = service.client
        assert (await client.get("/health/live")).json() == {"status": "alive"}
        assert (await client.get("/health/startup")).json()["status"] == "started"
        assert (await client.get("/v2/health/live")).status_code == 200
        ready = (await client.get("/health/ready")).json()
        assert ready["status"] == "ready"
        queue = {"workers": 1, "batch_size": 4, "running": 0, "waiting": 0, "decoding": 0,
                 "capacity": 3}  # fmt: skip
        assert ready["queue"] == queue
        assert (await client.get("/v2/health/ready")).json()["status"] == "ready"
        assert (await client.get("/v2/models/fake.en/ready")).json()["ready"] is True
        assert (await client.get("/v2/models/whisper-1/ready")).status_code == 200
        missing = await client.get("/v2/models/large-v3/ready")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


async def test_thresholds_from_the_settings_give_reasons_and_503() -> None:
    async with serve(
        health_cpu_degraded_percent=0,
        health_memory_degraded_percent=0,
        health_memory_unhealthy_percent=0.5,
        health_disk_free_degraded_mib=100_000_000,
    ) as service:
        response = await service.client.get("/health")
        live = await service.client.get("/health/live")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unhealthy"
    checks = report["checks"]
    assert checks["cpu"]["status"] == "degraded"
    assert "≥ 0%" in checks["cpu"]["message"]
    assert checks["memory"]["status"] == "unhealthy"
    assert "≥ 0.5%" in checks["memory"]["message"]
    assert checks["memory"]["threshold"] == {"degraded": 0.0, "unhealthy": 0.5}
    assert checks["disk"]["status"] == "degraded"
    assert "free space" in checks["disk"]["message"]
    assert live.status_code == 200  # liveness does not care


async def test_memory_guard_refuses_new_transcriptions(audio_dir: Path) -> None:
    engine = FakeEngine()
    async with serve(
        engine, health_memory_degraded_percent=0, health_memory_unhealthy_percent=0.5
    ) as service:
        response = await service.client.post(
            "/transcribe", files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())}
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "memory_pressure"
    assert "short of memory" in error["message"]
    assert response.headers["retry-after"]
    assert engine.calls == 0


async def test_readiness_is_503_while_the_model_loads() -> None:
    import threading

    from tests.support.fakes import loader

    loaded = threading.Event()
    engine = FakeEngine()
    load = loader(engine)

    def slow(settings):  # type: ignore[no-untyped-def]
        loaded.wait(10)
        return load(settings)

    import httpx

    from tests.support.in_process import quiet_settings
    from whisper_service.app import create_app

    app = create_app(quiet_settings(), engine_loader=slow)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health/live")).status_code == 200
            startup = await client.get("/health/startup")
            assert startup.status_code == 503
            assert startup.json() == {"status": "loading"}
            ready = await client.get("/health/ready")
            assert (ready.status_code, ready.json()["status"]) == (503, "loading")
            busy = await client.post("/transcribe", files={"file": ("a.wav", b"x")})
            assert busy.status_code == 503
            assert busy.json()["error"]["code"] == "model_loading"
            loaded.set()


async def test_the_queue_report_shows_the_batch_each_worker_runs() -> None:
    async with serve(inference_workers=2, batch_max_size=4, queue_size=2) as service:
        queue = (await service.client.get("/health/ready")).json()["queue"]
        assert queue["workers"] == 2
        assert queue["batch_size"] == 4
        assert service.runtime.scheduler.slots == 8
