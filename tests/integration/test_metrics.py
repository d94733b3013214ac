"""Prometheus metrics under gunicorn with two workers, scraped by promtool and by a real
Prometheus server on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, running
from tests.support.prometheus import Prometheus

ROUTE = "/v1/models"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running(tmp_path_factory.mktemp("two-workers"), WHISPER_WEB_WORKERS="2") as server:
        yield server


def sample(scrape: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in scrape.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_on_both_workers_are_summed_in_one_scrape(two_workers: LiveServer) -> None:
    url = two_workers.url
    pids = set()
    sent = 0
    give_up = time.monotonic() + 60
    # A new connection each time: the kernel hands it to whichever worker accepts.
    while (len(pids) < 2 or sent < 20) and time.monotonic() < give_up:
        with httpx.Client() as client:
            assert client.get(f"{url}{ROUTE}").status_code == 200
            pids.add(client.get(f"{url}/health").json()["pid"])
        sent += 1
    assert len(pids) == 2, "the requests never reached both workers"
    scrape = httpx.get(f"{url}/metrics").text
    assert sample(scrape, "whisper_http_requests_total", route=ROUTE, status="200") == sent
    assert sample(scrape, "whisper_http_request_duration_seconds_count", route=ROUTE) == sent
    assert sample(scrape, "whisper_model_loaded") == 1  # livemin: both loaded
    assert sample(scrape, "whisper_queue_capacity") == 2 * 3  # livesum of the dev preset's 3
    assert 'whisper_build_info{app_env="development",engine="faster-whisper"' in scrape
    for line in scrape.splitlines():  # bounded labels: templates, never raw paths
        assert 'route="/v2/models/' not in line or "{name}" in line


def test_scrape_passes_promtool_check_metrics(two_workers: LiveServer, audio_dir: Path) -> None:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        httpx.post(f"{two_workers.url}/transcribe", files={"file": ("jfk.flac", fp)}, timeout=60)
    httpx.post(f"{two_workers.url}/transcribe", files={"file": ("x.txt", b"not audio")})
    scrape = httpx.get(f"{two_workers.url}/metrics").text
    assert sample(scrape, "whisper_inference_seconds_count", task="transcribe") >= 1
    assert sample(scrape, "whisper_audio_seconds_total") >= 11.0
    assert sample(scrape, "whisper_realtime_factor_count") >= 1
    assert sample(scrape, "whisper_rejections_total", reason="unsupported_media") >= 1
    binary = shutil.which("promtool")
    assert binary, "promtool not installed"
    result = subprocess.run(
        [binary, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def prometheus(two_workers: LiveServer, tmp_path: Path) -> Iterator[Prometheus]:
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "whisper",
                "static_configs": [{"targets": [f"127.0.0.1:{two_workers.port}"]}],
            }
        ],
    }
    server = Prometheus(tmp_path / "prometheus", config)
    try:
        yield server
    finally:
        server.stop()


def test_a_real_prometheus_counts_the_requests_sent(
    two_workers: LiveServer, prometheus: Prometheus
) -> None:
    route = "/v2/models/{name}/ready"
    query = f'sum(whisper_http_requests_total{{route="{route}"}})'
    before = httpx.get(f"{two_workers.url}/metrics").text
    baseline = sample(before, "whisper_http_requests_total", route=route)
    sent = 7
    for _ in range(sent):
        with httpx.Client() as client:
            client.get(f"{two_workers.url}/v2/models/tiny.en/ready")
    expected = baseline + sent

    def counted() -> bool:
        result = prometheus.query(query)
        return bool(result) and float(result[0]["value"][1]) == expected

    prometheus.wait(counted, f"{query} = {expected}")
