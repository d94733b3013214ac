"""Admission control on a live server: one worker, queue of one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import LONG_AUDIO, LiveServer

CONCURRENT = 5


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(WHISPER_INFERENCE_WORKERS="1", WHISPER_QUEUE_SIZE="1")


def test_requests_beyond_capacity_are_refused_at_once_and_admitted_ones_succeed(
    server: LiveServer, audio_dir: Path
) -> None:
    audio = (audio_dir / LONG_AUDIO).read_bytes()
    results: list[tuple[int, float, httpx.Response]] = []
    lock = threading.Lock()
    go = threading.Barrier(CONCURRENT)

    def call(i: int) -> None:
        go.wait()
        response = httpx.post(
            f"{server.url}/transcribe",
            files={"file": ("long.wav", audio)},
            data={"language": "en"},
            timeout=300,
        )
        with lock:
            results.append((i, time.monotonic(), response))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ok = [r for r in results if r[2].status_code == 200]
    refused = [r for r in results if r[2].status_code == 429]
    assert len(ok) + len(refused) == CONCURRENT, [r[2].status_code for r in results]
    # capacity = 1 running + 1 waiting
    assert len(ok) == 2
    assert len(refused) == CONCURRENT - 2
    for _, _, response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "queue_full"
    # "At once": every refusal came back before the first admitted request finished.
    assert max(t for _, t, _ in refused) < min(t for _, t, _ in ok)
    for _, _, response in ok:
        assert "america" in response.json()["text"].lower()
    assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200
