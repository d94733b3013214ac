"""Goodput admission over HTTP (in-process, a stand-in engine): a request that could
not finish before its deadline at the current load is refused at once, from its
header, before it is decoded or queued; what is admitted runs. The arithmetic is in
tests/unit/test_goodput.py; eight long uploads against the production container are
in benchmarks/compare.py (long_requests)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.support import LONG_AUDIO
from tests.support.fakes import FakeEngine
from tests.support.in_process import serve

pytestmark = pytest.mark.anyio


async def test_audio_too_long_for_the_deadline_is_refused_from_its_header(
    audio_dir: Path, tmp_path: Path
) -> None:
    engine = FakeEngine()
    radio = (audio_dir / LONG_AUDIO).read_bytes()  # 127 s: 16 s at the prior rate
    async with serve(engine, request_timeout_seconds=10) as service:
        started = time.monotonic()
        response = await service.client.post("/transcribe", files={"file": ("r.wav", radio)})
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "deadline_unreachable"
        assert "127 s of audio" in error["message"]
        assert "retry-after" not in response.headers  # waiting would not help
        assert engine.calls == 0
        assert service.runtime.audio_memory.used == 0
        assert service.runtime.scheduler.stats.admitted == 0
        assert service.runtime.goodput.backlog_seconds == 0
        assert elapsed < 1.0
    # The same file on the OpenAI route, with jobs served: pointed to /jobs.
    store = str(tmp_path / "store")
    async with serve(engine, request_timeout_seconds=10, jobs_store=store) as service:
        response = await service.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("r.wav", radio)},
            data={"model": "whisper-1"},
        )
        assert response.status_code == 503, response.text
        assert "POST /jobs" in response.json()["error"]["message"]


async def test_what_is_admitted_ahead_counts_and_the_refused_are_told_when(
    audio_dir: Path,
) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    radio = (audio_dir / LONG_AUDIO).read_bytes()
    jfk = (audio_dir / "jfk.flac").read_bytes()
    async with serve(engine, request_timeout_seconds=20) as service:
        client = service.client
        first = asyncio.create_task(client.post("/transcribe", files={"file": ("a.wav", radio)}))
        await asyncio.to_thread(engine.started.wait, 10)
        second = asyncio.create_task(client.post("/transcribe", files={"file": ("b.flac", jfk)}))
        for _ in range(1000):  # the second's audio in the backlog, within 10 s
            if service.runtime.goodput.backlog_seconds >= 138:
                break
            await asyncio.sleep(0.01)
        # 127 + 11 s ahead: another 127 s needs 33 s at 10/s with the margin.
        third = await client.post("/transcribe", files={"file": ("c.wav", radio)})
        assert third.status_code == 503, third.text
        assert third.json()["error"]["code"] == "deadline_unreachable"
        assert int(third.headers["retry-after"]) >= 1
        release.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
        assert service.runtime.goodput.backlog_seconds == 0
        assert service.runtime.goodput.measured


async def test_off_the_deadline_alone_decides(audio_dir: Path) -> None:
    radio = (audio_dir / LONG_AUDIO).read_bytes()
    async with serve(FakeEngine(), request_timeout_seconds=10, goodput_admission=False) as service:
        response = await service.client.post("/transcribe", files={"file": ("r.wav", radio)})
        assert response.status_code == 200, response.text
