"""Liveness of a real server while real inference saturates its CPUs (the report,
probes and thresholds are tested in-process in tests/http/test_health.py)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import LONG_AUDIO, LiveServer


def test_liveness_answers_while_inference_saturates_the_cpus(
    live_server: Callable[..., LiveServer], audio_dir: Path
) -> None:
    # Two unbatched inference workers, no queue: two long requests use both CPUs and
    # fill it.
    url = live_server(WHISPER_INFERENCE_WORKERS="2", WHISPER_BATCH_MAX_SIZE="1",
                      WHISPER_QUEUE_SIZE="0").url  # fmt: skip
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
