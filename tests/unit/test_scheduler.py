"""The scheduler's admission rules with stand-in work (plumbing only, no model)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from whisper_service.capacity.scheduler import Rejected, Scheduler, SchedulerStats
from whisper_service.engines.base import Cancelled, CancelToken


def blocking_work(release: threading.Event, calls: list[str], name: str):  # type: ignore[no-untyped-def]
    def work(token: CancelToken) -> str:
        calls.append(name)
        release.wait(10)
        return name

    return work


def test_capacity_is_workers_plus_queue_and_overflow_is_refused_at_once() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=1, queue_timeout=30)
        release, calls = threading.Event(), []
        first = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "a"), CancelToken())
        )
        second = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "b"), CancelToken())
        )
        await asyncio.sleep(0.05)
        assert scheduler.stats.running == 1
        assert scheduler.stats.waiting == 1
        assert scheduler.full
        with pytest.raises(Rejected) as info:
            await scheduler.run(blocking_work(release, calls, "c"), CancelToken())
        assert info.value.reason == "queue_full"
        assert info.value.retry_after >= 1
        release.set()
        assert await first == "a"
        assert await second == "b"
        assert calls == ["a", "b"]
        assert not scheduler.full
        scheduler.close()

    asyncio.run(scenario())


def test_waiting_request_whose_client_left_never_runs() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2, queue_timeout=30)
        release, calls = threading.Event(), []
        running = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "busy"), CancelToken())
        )
        await asyncio.sleep(0.05)
        gone = False

        async def is_disconnected() -> bool:
            return gone

        waiter = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "ghost"), CancelToken(), is_disconnected)
        )
        await asyncio.sleep(0.05)
        gone = True
        with pytest.raises(Rejected) as info:
            await waiter
        assert info.value.reason == "client_disconnected"
        release.set()
        await running
        assert calls == ["busy"]
        assert scheduler.stats.waiting == 0
        assert scheduler.stats.running == 0
        scheduler.close()

    asyncio.run(scenario())


def test_queue_timeout_and_deadline() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=5, queue_timeout=0.2)
        release, calls = threading.Event(), []
        running = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "busy"), CancelToken())
        )
        await asyncio.sleep(0.05)
        with pytest.raises(Rejected) as info:
            await scheduler.run(blocking_work(release, calls, "late"), CancelToken())
        assert info.value.reason == "queue_timeout"
        token = CancelToken(deadline=time.monotonic() + 0.05)
        with pytest.raises(Rejected) as info:
            await scheduler.run(blocking_work(release, calls, "late"), token)
        assert info.value.reason == "deadline_exceeded"
        release.set()
        await running
        assert calls == ["busy"]
        scheduler.close()

    asyncio.run(scenario())


def test_cancelling_a_running_request_tells_the_worker_and_frees_the_slot_after() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=0, queue_timeout=1)
        observed: list[str] = []

        def work(token: CancelToken) -> str:
            for _ in range(200):
                try:
                    token.check()
                except Cancelled as exc:
                    observed.append(exc.reason)
                    raise
                time.sleep(0.01)
            return "finished"

        task = asyncio.create_task(scheduler.run(work, CancelToken()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert observed == ["client_disconnected"]
        assert scheduler.stats.running == 0
        assert await scheduler.run(lambda _t: "next", CancelToken()) == "next"
        scheduler.close()

    asyncio.run(scenario())


def test_closed_scheduler_refuses() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=0, queue_timeout=1)
        scheduler.close()
        with pytest.raises(Rejected, match="shutting_down"):
            await scheduler.run(lambda _t: None, CancelToken())

    asyncio.run(scenario())


def test_cancel_token_deadline() -> None:
    token = CancelToken(deadline=time.monotonic() - 1)
    with pytest.raises(Cancelled, match="deadline_exceeded"):
        token.check()
    token = CancelToken()
    token.check()
    token.cancel("client_disconnected")
    assert token.cancelled
    with pytest.raises(Cancelled, match="client_disconnected"):
        token.check()


def test_a_place_taken_before_decoding_counts_and_is_given_back() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=1, queue_timeout=30)
        first, second = scheduler.admit(), scheduler.admit()
        assert scheduler.full
        assert scheduler.stats.admitted == 2
        with pytest.raises(Rejected, match="queue_full"):
            scheduler.admit()
        with second:  # a decode that failed: the place comes back
            pass
        assert scheduler.stats.admitted == 1
        assert not scheduler.full
        # The place turns into the wait for a worker, never counted twice.
        assert await scheduler.run(lambda _t: "ok", CancelToken(), admission=first) == "ok"
        assert scheduler.stats == SchedulerStats(1, 1, 1, 0, 0, 0)
        with first:  # leaving the block after running gives nothing back twice
            pass
        assert scheduler.stats.admitted == 0
        scheduler.close()

    asyncio.run(scenario())


def test_a_live_turn_goes_ahead_of_work_already_waiting() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=3, queue_timeout=30)
        release, calls = threading.Event(), []
        busy = asyncio.create_task(scheduler.run(blocking_work(release, calls, "busy"),
                                                 CancelToken()))  # fmt: skip
        await asyncio.sleep(0.05)
        batch = asyncio.create_task(scheduler.run(blocking_work(release, calls, "batch"),
                                                  CancelToken()))  # fmt: skip
        await asyncio.sleep(0.05)
        live = asyncio.create_task(scheduler.run(blocking_work(release, calls, "live"),
                                                 CancelToken(), priority=True))  # fmt: skip
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(busy, batch, live)
        assert calls == ["busy", "live", "batch"]

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=3, queue_timeout=30)
        release, calls = threading.Event(), []
        busy = asyncio.create_task(scheduler.run(blocking_work(release, calls, "busy"),
                                                 CancelToken()))  # fmt: skip
        await asyncio.sleep(0.05)
        gone = CancelToken()
        waiting = asyncio.create_task(
            scheduler.run(blocking_work(release, calls, "gone"), gone, priority=True)
        )
        await asyncio.sleep(0.05)
        gone.cancel("client_disconnected")
        with pytest.raises(Rejected):
            await waiting
        release.set()
        await busy
        # The worker is free again: the next run starts at once.
        assert await scheduler.run(blocking_work(release, calls, "next"), CancelToken()) == "next"
        assert calls == ["busy", "next"]

    asyncio.run(scenario())


def test_with_batching_each_worker_runs_batch_size_requests_at_once() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=2, queue_size=1, queue_timeout=30, batch_size=3)
        release, calls = threading.Event(), []
        running = [
            asyncio.create_task(scheduler.run(blocking_work(release, calls, n), CancelToken()))
            for n in "abcdefg"
        ]
        await asyncio.sleep(0.1)
        # 2 x 3 running together (their model calls are what gets batched), 1 waiting.
        assert scheduler.stats.running == 6
        assert scheduler.stats.waiting == 1
        assert sorted(calls) == list("abcdef")
        with pytest.raises(Rejected) as info:
            await scheduler.run(blocking_work(release, calls, "h"), CancelToken())
        assert info.value.reason == "queue_full"
        release.set()
        assert [await t for t in running] == list("abcdefg")
        scheduler.close()

    asyncio.run(scenario())
