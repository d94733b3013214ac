"""Request deadlines and departed clients over HTTP (in-process, a stand-in engine that
checks its cancel token as the real ones do; tests/integration/test_inference_stops.py shows
the real engines stop on a cancelled token)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio


async def test_deadline_is_504_and_frees_the_worker(audio_dir: Path) -> None:
    engine = FakeEngine(hold=threading.Event())  # never finishes on its own
    # The deadline is what is tested: goodput admission would refuse 11 s of audio for
    # a 1 s deadline at once (tests/http/test_goodput.py).
    async with serve(engine, request_timeout_seconds=1, goodput_admission=False) as service:
        response = await service.client.post(
            "/transcribe", files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())}
        )
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert "retry-after" not in response.headers
        # The scheduler frees a worker only once its thread has returned: running == 0
        # right after the 504 means inference really stopped.
        ready = await service.client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["queue"]["running"] == 0


async def test_a_request_that_waits_past_the_queue_timeout_never_runs(audio_dir: Path) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve(
        engine, queue_timeout_seconds=0.5, inference_workers=1, batch_max_size=1
    ) as service:
        first = asyncio.create_task(
            service.client.post("/transcribe", files={"file": ("a.flac", audio)})
        )
        await asyncio.to_thread(engine.started.wait, 10)
        second = await service.client.post("/transcribe", files={"file": ("b.flac", audio)})
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "queue_timeout"
        assert int(second.headers["retry-after"]) >= 1
        assert engine.calls == 1  # the second never reached the engine
        release.set()
        assert (await first).status_code == 200
