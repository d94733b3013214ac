"""Admission control: one worker, a queue of one; what does not fit is refused at
once, what was admitted runs (in-process, a stand-in engine held busy)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio

CONCURRENT = 5


async def test_requests_beyond_capacity_are_refused_at_once_and_admitted_ones_succeed(
    audio_dir: Path,
) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve(engine, inference_workers=1, batch_max_size=1, queue_size=1) as service:
        finished: dict[int, float] = {}
        refusals_back = asyncio.Event()

        async def call(i: int) -> int:
            response = await service.client.post("/transcribe", files={"file": ("jfk.flac", audio)})
            finished[i] = time.monotonic()
            if len(finished) == CONCURRENT - 2:
                refusals_back.set()
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["code"] == "queue_full"
            return response.status_code

        calls = [asyncio.create_task(call(i)) for i in range(CONCURRENT)]
        # Every refusal comes back while the admitted ones are still held.
        await asyncio.wait_for(refusals_back.wait(), 30)
        assert engine.calls <= 1
        # The two admitted ones decode, then one runs and one waits.
        await asyncio.to_thread(engine.started.wait, 10)
        for _ in range(500):
            stats = service.runtime.scheduler.stats
            if (stats.running, stats.waiting, stats.admitted) == (1, 1, 0):
                break
            await asyncio.sleep(0.01)
        assert (stats.running, stats.waiting, stats.admitted) == (1, 1, 0)
        ready = await service.client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "overloaded"
        release.set()
        statuses = await asyncio.gather(*calls)
    assert sorted(statuses) == [200, 200, 429, 429, 429]
    assert engine.calls == 2
