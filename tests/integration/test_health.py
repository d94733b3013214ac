"""The health monitor and probes on live servers."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import LONG_AUDIO, LiveServer

CHECKS = {"cpu", "memory", "model", "event_loop", "disk"}


def test_full_report_shape(default_server: LiveServer) -> None:
    response = httpx.get(f"{default_server.url}/health", timeout=10)
    report = response.json()
    assert response.status_code == (503 if report["status"] == "unhealthy" else 200)
    assert set(report["checks"]) == CHECKS
    for name, check in report["checks"].items():
        assert check["status"] in ("healthy", "degraded", "unhealthy"), name
        assert check["message"], name
        assert set(check["threshold"]) == {"degraded", "unhealthy"}, name
    assert report["checks"]["model"]["status"] == "healthy"
    assert report["checks"]["memory"]["trend"]["samples"] >= 1
    for key in ("version", "engine", "model", "uptime_seconds", "queue", "in_flight"):
        assert key in report, key
    assert report["draining"] is False
    assert report["model_loaded"] is True


def test_probes_and_kserve_aliases(default_server: LiveServer) -> None:
    url = default_server.url
    assert httpx.get(f"{url}/health/startup").json()["status"] == "started"
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").json()["status"] == "ready"
    assert httpx.get(f"{url}/v2/models/tiny.en/ready").json()["ready"] is True
    assert httpx.get(f"{url}/v2/models/whisper-1/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/large-v3/ready").status_code == 404


@pytest.fixture(scope="module")
def low_threshold_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(
        WHISPER_HEALTH_CPU_DEGRADED_PERCENT="0",
        WHISPER_HEALTH_MEMORY_DEGRADED_PERCENT="0",
        WHISPER_HEALTH_MEMORY_UNHEALTHY_PERCENT="0.5",
        WHISPER_HEALTH_DISK_FREE_DEGRADED_MIB="100000000",
        WHISPER_HEALTH_SAMPLE_INTERVAL_SECONDS="0.5",
    )


def test_thresholds_from_the_environment_give_reasons_and_503(
    low_threshold_server: LiveServer,
) -> None:
    response = httpx.get(f"{low_threshold_server.url}/health", timeout=10)
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
    # liveness does not care
    assert httpx.get(f"{low_threshold_server.url}/health/live").status_code == 200


def test_memory_guard_refuses_new_transcriptions(
    low_threshold_server: LiveServer, audio_dir: Path
) -> None:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        response = httpx.post(
            f"{low_threshold_server.url}/transcribe", files={"file": ("jfk.flac", fp)}, timeout=30
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "memory_pressure"
    assert "short of memory" in error["message"]
    assert response.headers["retry-after"]


@pytest.fixture(scope="module")
def saturated_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    # Two inference workers, no queue: two long requests use both CPUs and fill it.
    return server_factory(WHISPER_INFERENCE_WORKERS="2", WHISPER_QUEUE_SIZE="0")


def test_liveness_answers_while_inference_saturates_the_cpus(
    saturated_server: LiveServer, audio_dir: Path
) -> None:
    url = saturated_server.url
    audio = (audio_dir / LONG_AUDIO).read_bytes()
    statuses: list[int] = []

    def transcribe() -> None:
        response = httpx.post(f"{url}/transcribe", files={"file": ("l.wav", audio)}, timeout=120)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=transcribe) for _ in range(2)]
    for thread in threads:
        thread.start()
    live_ms: list[float] = []
    ready_codes: list[int] = []
    with httpx.Client(timeout=10) as client:
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            assert client.get(f"{url}/health/live").status_code == 200
            live_ms.append((time.perf_counter() - started) * 1000)
            ready_codes.append(client.get(f"{url}/health/ready").status_code)
            time.sleep(0.05)
        after = client.get(f"{url}/health/ready")
    assert statuses == [200, 200]
    assert 503 in ready_codes  # full while both ran
    assert after.status_code == 200
    quantiles = statistics.quantiles(live_ms, n=100)
    print(
        f"\n/health/live under saturation: n={len(live_ms)} "
        f"p50={statistics.median(live_ms):.1f} ms p99={quantiles[98]:.1f} ms "
        f"max={max(live_ms):.1f} ms"
    )
