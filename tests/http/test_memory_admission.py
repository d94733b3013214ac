"""What a request may hold: its place in the queue from before decoding, the memory
of its decoded audio, and its deadline while decoding (in-process, real decoding, a
stand-in engine)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from tests.support.media import surround_flac

pytestmark = pytest.mark.anyio


async def test_audio_beyond_the_budget_is_refused_before_decoding(audio_dir: Path) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    jfk = (audio_dir / "jfk.flac").read_bytes()  # 11 s: 0.7 MiB decoded
    long = (audio_dir / "long" / "gwbush_radio_address_2008-11-01.wav").read_bytes()
    async with serve(engine, audio_memory_mib=1, inference_workers=1, queue_size=3) as service:
        client = service.client
        first = asyncio.create_task(client.post("/transcribe", files={"file": ("a.flac", jfk)}))
        await asyncio.to_thread(engine.started.wait, 10)
        # The first request's audio holds most of the budget until it is answered.
        second = await client.post("/transcribe", files={"file": ("b.flac", jfk)})
        assert second.status_code == 503, second.text
        assert second.json()["error"]["code"] == "memory_pressure"
        assert second.headers["retry-after"] == "5"
        # 127 s could never fit in 1 MiB: a 413 that says so, not "retry later".
        too_long = await client.post("/transcribe", files={"file": ("c.wav", long)})
        assert too_long.status_code == 413
        assert too_long.json()["error"]["code"] == "audio_too_long"
        assert "holds at most 1 MiB" in too_long.json()["error"]["message"]
        assert engine.calls == 1
        release.set()
        assert (await first).status_code == 200
        assert service.runtime.audio_memory.used == 0  # everything given back
        again = await client.post("/transcribe", files={"file": ("b.flac", jfk)})
        assert again.status_code == 200


async def test_the_budget_refuses_at_once_while_every_decoding_thread_is_busy(
    audio_dir: Path,
) -> None:
    # One decoding thread, taken: as when long uploads decode ahead of a burst.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    busy = threading.Event()
    jfk = (audio_dir / "jfk.flac").read_bytes()  # 11 s: 0.7 MiB decoded
    async with serve(FakeEngine(), audio_memory_mib=1, inference_workers=1) as service:
        blocker = loop.run_in_executor(None, busy.wait, 30)
        client = service.client
        first = asyncio.create_task(client.post("/transcribe", files={"file": ("a.flac", jfk)}))
        memory = service.runtime.audio_memory
        for _ in range(1000):  # its audio reserved from the header, before decoding
            if memory.used:
                break
            await asyncio.sleep(0.01)
        assert memory.used > 0
        second = await asyncio.wait_for(
            client.post("/transcribe", files={"file": ("b.flac", jfk)}), timeout=10
        )
        assert second.status_code == 503, second.text
        assert second.json()["error"]["code"] == "memory_pressure"
        assert not first.done()  # still waiting for the thread
        busy.set()
        await blocker
        assert (await first).status_code == 200
        assert memory.used == 0


async def test_decoding_stops_at_the_request_deadline() -> None:
    engine = FakeEngine()
    heavy = surround_flac(60.0)  # 192 kHz 7.1: over a second of CPU to decode
    # The deadline is what is tested: goodput admission would refuse 60 s of audio for
    # a 0.3 s deadline at once, from the header (tests/http/test_goodput.py).
    async with serve(
        engine, request_timeout_seconds=0.3, max_audio_seconds=600, goodput_admission=False
    ) as service:
        started = time.monotonic()
        response = await service.client.post("/transcribe", files={"file": ("s.flac", heavy)})
        elapsed = time.monotonic() - started
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert engine.calls == 0
        assert service.runtime.scheduler.stats.admitted == 0
        assert service.runtime.audio_memory.used == 0
    print(f"\n504 after {elapsed:.2f} s of a decode that takes longer")


async def test_a_burst_takes_places_before_decoding(audio_dir: Path) -> None:
    release = threading.Event()
    engine = FakeEngine(hold=release)
    jfk = (audio_dir / "jfk.flac").read_bytes()
    async with serve(engine, inference_workers=1, batch_max_size=1, queue_size=1) as service:
        burst = [
            asyncio.create_task(service.client.post("/transcribe", files={"file": ("a", jfk)}))
            for _ in range(6)
        ]
        await asyncio.to_thread(engine.started.wait, 10)
        release.set()
        statuses = sorted(r.status_code for r in await asyncio.gather(*burst))
    # Capacity 2: the rest were refused at admission, none of them decoded.
    assert statuses == [200, 200, 429, 429, 429, 429]
