"""Admission control and inference workers, kept off the event loop.

A fixed number of worker threads run inference; at most ``queue_size`` more
requests may wait for one. Anything beyond is rejected at once (the API answers 429
with ``Retry-After``) so callers and Cloud Run's autoscaler see back-pressure
instead of timeouts. A request takes its place (``admit``) before its audio is
decoded, so a burst cannot decode more at once than the queue could ever hold. A
waiting request gives up when its queue timeout or deadline passes, or when its
client disconnects; either way no inference runs for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from whisper_service.engines.base import Cancelled, CancelToken
from whisper_service.errors import Refused
from whisper_service.observability import metrics
from whisper_service.observability.telemetry import telemetry

T = TypeVar("T")

DISCONNECT_POLL_SECONDS = 0.1


class Rejected(Refused):
    """The request was not run, or its inference was stopped. ``reason``: queue_full,
    queue_timeout, deadline_exceeded, client_disconnected, shutting_down or cancelled."""

    retry_after: float

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason, retry_after)


@dataclass(frozen=True)
class SchedulerStats:
    """A snapshot for health reports and metrics."""

    workers: int
    batch_size: int  # requests per worker, their model calls batched
    queue_size: int
    running: int
    waiting: int
    admitted: int  # took a place, still decoding


class Admission:
    """A place taken in the queue before decoding; ``Scheduler.run`` uses it, and
    leaving the ``with`` block without running gives it back."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.held = True

    def use(self) -> None:
        """Turn the place into a wait for a worker (the scheduler's own call)."""
        if self.held:
            self.held = False
            self._scheduler._admitted -= 1

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        self.use()


class Slots:
    """``count`` inference workers handed out first come, first served, except that a
    live session's turn (``priority``) goes ahead of everything else waiting, so its
    text stays timely under batch load."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, priority: bool = False) -> None:
        """Wait for a worker; cancelled, it takes none (or gives back the one it got)."""
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._waiting[0 if priority else 1]
        line.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as it was cancelled
            elif granted in line:
                line.remove(granted)
            raise

    def release(self) -> None:
        """Give a worker back: to the first live waiter, else the first other one."""
        for line in self._waiting:
            while line:
                granted = line.popleft()
                if not granted.done():
                    granted.set_result(None)
                    return
        self._free += 1


class Scheduler:
    """Bounded queue in front of the inference threads: ``workers`` x ``batch_size``
    requests run at once (with batching, each worker's model calls hold up to
    ``batch_size`` requests' windows; engines/batching.py)."""

    def __init__(
        self, *, workers: int, queue_size: int, queue_timeout: float, batch_size: int = 1
    ) -> None:
        self.workers = workers
        self.batch_size = batch_size
        self.slots = workers * batch_size
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self._slots = Slots(self.slots)
        metrics.QUEUE_CAPACITY.set(queue_size)
        metrics.INFERENCE_WORKERS.set(workers)
        metrics.BATCH_MAX_SIZE.set(batch_size)
        self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="inference")
        self._running = 0
        self._waiting = 0
        self._admitted = 0
        self._closed = False
        # Recent inference durations, to tell rejected callers when to come back.
        self._recent_seconds = 5.0
        # Wall time with at least one inference running (capacity/goodput.py).
        self._busy_seconds = 0.0
        self._busy_since = 0.0

    @property
    def stats(self) -> SchedulerStats:
        """Current occupancy."""
        return SchedulerStats(
            self.workers,
            self.batch_size,
            self.queue_size,
            self._running,
            self._waiting,
            self._admitted,
        )

    @property
    def busy_seconds(self) -> float:
        """Wall seconds so far during which at least one inference ran."""
        if self._running:
            return self._busy_seconds + time.monotonic() - self._busy_since
        return self._busy_seconds

    @property
    def idle_worker(self) -> bool:
        """Whether work started now would run at once (a worker free, nobody waiting)."""
        return self._running < self.slots and self._waiting == 0

    @property
    def full(self) -> bool:
        """Whether a new request would be rejected now."""
        taken = self._running + self._waiting + self._admitted
        return taken >= self.slots + self.queue_size

    def admit(self) -> Admission:
        """Take a place for a request about to decode its audio; Rejected at once when
        there is none (or the process is stopping)."""
        if self._closed:
            raise Rejected("shutting_down", self.retry_after())
        if self.full:
            raise Rejected("queue_full", self.retry_after())
        self._admitted += 1
        return Admission(self)

    def retry_after(self) -> float:
        """Seconds a rejected caller should wait: the queue ahead of it, drained."""
        backlog = (self._waiting + self._running + self._admitted) / self.slots
        return max(1.0, round(backlog * self._recent_seconds))

    async def _wait_for_slot(
        self,
        token: CancelToken,
        is_disconnected: Callable[[], Awaitable[bool]] | None,
        queue_timeout: float | None,
        priority: bool = False,
    ) -> None:
        """Acquire a worker slot, giving up at the queue timeout (None: never) or the
        token's deadline, or when the token is cancelled or the client has gone."""
        give_up = math.inf if queue_timeout is None else time.monotonic() + queue_timeout
        if token.deadline is not None:
            give_up = min(give_up, token.deadline)
        acquire = asyncio.ensure_future(self._slots.acquire(priority))
        try:
            while True:
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    reason = (
                        "deadline_exceeded"
                        if token.deadline is not None and give_up >= token.deadline
                        else "queue_timeout"
                    )
                    raise Rejected(reason, self.retry_after())
                done, _ = await asyncio.wait(
                    {acquire}, timeout=min(remaining, DISCONNECT_POLL_SECONDS)
                )
                if done:
                    return
                if token.cancelled:
                    raise Rejected(token.reason or "cancelled", self.retry_after())
                if is_disconnected is not None and await is_disconnected():
                    raise Rejected("client_disconnected", 0)
        except BaseException:
            if acquire.done() and not acquire.cancelled():
                self._slots.release()
            else:
                acquire.cancel()
            raise

    async def run(
        self,
        fn: Callable[[CancelToken], T],
        token: CancelToken,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        admission: Admission | None = None,
        *,
        priority: bool = False,
    ) -> T:
        """Run ``fn(token)`` on a worker thread, in the place ``admission`` took (or
        one taken now), ahead of other waiters with ``priority`` (a live session's
        turn); raise Rejected if it was not run, or was stopped mid-way (deadline,
        drain)."""
        if self._closed:
            raise Rejected("shutting_down", self.retry_after())
        if admission is not None and admission.held:
            admission.use()
        elif self.full:
            raise Rejected("queue_full", self.retry_after())
        self._waiting += 1
        metrics.QUEUE_DEPTH.inc()
        queued = time.monotonic()
        try:
            with telemetry.span("queue.wait", **{"whisper.queue.waiting": self._waiting}):
                await self._wait_for_slot(token, is_disconnected, self.queue_timeout, priority)
        finally:
            self._waiting -= 1
            metrics.QUEUE_DEPTH.dec()
        telemetry.queue_waited(time.monotonic() - queued)
        return await self._execute(fn, token)

    async def run_background(self, fn: Callable[[CancelToken], T], token: CancelToken) -> T:
        """Run ``fn(token)`` for a background job: it waits for a worker as long as it
        takes, outside the request queue (so it never makes a request see 429) and
        without its timeout. Raises Rejected when the token is cancelled first."""
        if self._closed:
            raise Rejected("shutting_down", self.retry_after())
        await self._wait_for_slot(token, None, None)
        return await self._execute(fn, token)

    async def _execute(self, fn: Callable[[CancelToken], T], token: CancelToken) -> T:
        """Run on a worker thread; the caller holds a slot, released here."""
        started = time.monotonic()
        if not self._running:
            self._busy_since = started
        self._running += 1
        metrics.INFERENCE_RUNNING.inc()
        try:
            loop = asyncio.get_running_loop()
            # The worker thread sees this request's context: its span (for child spans)
            # and its log fields (request id).
            context = contextvars.copy_context()
            future = loop.run_in_executor(self._executor, context.run, fn, token)
            # If this request is cancelled (client gone), the thread is told to stop at
            # its next check; the slot is freed only when the thread really finishes.
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                token.cancel("client_disconnected")
                await asyncio.wait({future})
                raise
            except Cancelled as cancelled:
                # Stopped mid-way (deadline, drain): tell the caller when to come back.
                raise Rejected(cancelled.reason, self.retry_after()) from cancelled
        finally:
            ended = time.monotonic()
            self._recent_seconds = 0.8 * self._recent_seconds + 0.2 * (ended - started)
            self._running -= 1
            if not self._running:
                self._busy_seconds += ended - self._busy_since
            metrics.INFERENCE_RUNNING.dec()
            self._slots.release()

    def close(self) -> None:
        """Refuse new work and let the worker threads finish what they have."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=False)
