"""How work reaches an instance: one protocol, two queues.

A job's work is a ``Delivery``: its plan (decode, cut into units), then one per unit.

- ``PubSubQueue`` (``WHISPER_JOBS_QUEUE=pubsub``) publishes each delivery to
  ``WHISPER_PUBSUB_TOPIC``. A push subscription sends it as an HTTP request to any
  instance (``POST /internal/jobs/units``), so Cloud Run's load balancer and autoscaler
  see the work. A 2xx acks it; anything else, or a lost instance, makes Pub/Sub
  redeliver it with backoff, and after ``WHISPER_JOBS_MAX_ATTEMPTS`` deliveries it goes
  to the dead-letter topic, whose own push subscription reports it
  (``POST /internal/jobs/dead-letters``).
- ``LocalQueue`` (the offline default) does the same inside one process: the same
  handler, retries with backoff, the same dead-letter handler after the same number
  of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from pydantic import BaseModel

from whisper_service.storage import StorageUnavailable

log = structlog.get_logger(__name__)

# Backoff between local retries: the first, then doubled up to the last.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
# How long publishing may take before the job counts as not dispatched.
PUBLISH_TIMEOUT_SECONDS = 30.0


class Delivery(BaseModel):
    """One piece of a job's work: its plan (``unit`` None) or one unit."""

    job_id: str
    unit: int | None = None

    @property
    def piece(self) -> str:
        """``plan`` or the unit's number: the key its deliveries are counted under."""
        return "plan" if self.unit is None else str(self.unit)


class Retry(Exception):
    """The delivery could not be done now (draining, storage trouble, no model yet):
    leave it to the queue's redelivery."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Handler = Callable[[Delivery], Awaitable[None]]
"""Does a delivery; returns to ack it, raises Retry to have it redelivered."""
DeadLetter = Callable[[Delivery, int], Awaitable[None]]
"""Called with a delivery that failed on every one of its attempts."""


class Queue(Protocol):
    """Where deliveries are sent."""

    name: str

    async def publish(self, deliveries: list[Delivery]) -> None:
        """Send every delivery, or raise StorageUnavailable."""
        ...

    def start(self, handler: Handler, dead_letter: DeadLetter) -> None:
        """Begin delivering (a no-op where the deliveries come over HTTP)."""
        ...

    async def close(self) -> None:
        """Stop delivering; what is left is delivered again after a restart."""
        ...


class LocalQueue:
    """Deliveries inside this process, ``consumers`` at a time."""

    name = "local"

    def __init__(self, consumers: int, max_attempts: int) -> None:
        self.consumers = consumers
        self.max_attempts = max_attempts
        self._queue: asyncio.Queue[tuple[Delivery, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    async def publish(self, deliveries: list[Delivery]) -> None:
        """Queue each delivery as a first attempt."""
        for delivery in deliveries:
            self.put(delivery, attempts=0)

    def put(self, delivery: Delivery, attempts: int) -> None:
        """Queue ``delivery`` that has been tried ``attempts`` times already."""
        self._queue.put_nowait((delivery, attempts))

    def start(self, handler: Handler, dead_letter: DeadLetter) -> None:
        """Start the consumers."""
        for number in range(self.consumers):
            consumer = self._consume(handler, dead_letter)
            self._tasks.append(asyncio.create_task(consumer, name=f"job-queue-{number}"))

    async def _consume(self, handler: Handler, dead_letter: DeadLetter) -> None:
        while True:
            delivery, attempts = await self._queue.get()
            if attempts >= self.max_attempts:  # a crash loop counts too (restart recovery)
                await dead_letter(delivery, attempts)
                continue
            attempts += 1
            try:
                await handler(delivery)
            except Retry as retry:
                delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempts - 1))
                log.info("job_delivery_retrying", job_id=delivery.job_id, piece=delivery.piece,
                         attempts=attempts, reason=retry.reason, in_seconds=delay)  # fmt: skip
                self._later(delay, delivery, attempts)

    def _later(self, delay: float, delivery: Delivery, attempts: int) -> None:
        """Queue ``delivery`` again after ``delay``; a fired timer is forgotten, so a
        long-lived process holds only the retries still pending."""

        def fire() -> None:
            self._timers.discard(timer)
            self.put(delivery, attempts)

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    async def close(self) -> None:
        """Stop the consumers and pending retries."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)


class PubSubQueue:
    """Deliveries published to a Pub/Sub topic (PUBSUB_EMULATOR_HOST, when set, points
    the client at the emulator)."""

    name = "pubsub"

    def __init__(self, topic: str) -> None:
        from google.cloud import pubsub_v1

        self.topic = topic
        self._publisher = pubsub_v1.PublisherClient()

    async def publish(self, deliveries: list[Delivery]) -> None:
        """Publish all, then wait for every message id."""
        from google.api_core import exceptions

        def send() -> None:
            futures = [
                self._publisher.publish(
                    self.topic,
                    d.model_dump_json().encode(),
                    job_id=d.job_id,
                    piece=d.piece,
                )
                for d in deliveries
            ]
            for future in futures:
                future.result(timeout=PUBLISH_TIMEOUT_SECONDS)

        try:
            await asyncio.to_thread(send)
        except (exceptions.GoogleAPIError, TimeoutError) as exc:
            raise StorageUnavailable(f"publishing to {self.topic} failed: {exc}") from exc

    def start(self, handler: Handler, dead_letter: DeadLetter) -> None:
        """Pub/Sub pushes deliveries to the internal routes; nothing to start."""

    async def close(self) -> None:
        """Flush what the publisher still batches."""
        await asyncio.to_thread(self._publisher.stop)
