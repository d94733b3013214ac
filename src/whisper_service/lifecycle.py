"""Process lifecycle: startup, in-flight tracking and the graceful drain.

Startup: the HTTP server answers (``/health/live``) while the model loads in a
thread; readiness waits for the load and a warm-up pass. A model that cannot be
loaded ends the process with exit code 3, which gunicorn treats as a boot error.

Drain, on SIGTERM or SIGINT (Cloud Run sends SIGTERM and SIGKILLs 10 s later):

1. at once: ``draining`` is set; readiness answers 503; new requests get 503 with
   ``Retry-After`` and ``Connection: close``; the scheduler admits nothing new;
2. in-flight and queued requests run on, for at most ``drain_timeout_seconds``; queued
   async jobs are handed over at once, running ones at the end of their batch;
3. past that, whatever remains is cancelled through its CancelToken, answers a 503
   ``shutting_down`` and is logged; jobs still running are handed over from their
   last checkpoint;
4. then the server is told to exit: it closes the listener and its connections and
   the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import structlog
from fastapi import FastAPI

from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines import load_engine
from whisper_service.engines.base import CancelToken, Engine, TranscribeOptions
from whisper_service.health import HealthMonitor
from whisper_service.jobs.objects import open_objects
from whisper_service.jobs.runner import JobRunner
from whisper_service.jobs.store import JobStore
from whisper_service.models import ModelArtifact, resolve_model
from whisper_service.observability import metrics
from whisper_service.scheduler import Scheduler
from whisper_service.settings import Settings
from whisper_service.storage import GcsStorage

log = structlog.get_logger(__name__)

BOOT_ERROR_EXIT_CODE = 3
# After cancelling leftovers, how long to let them write their 503 before exiting.
CANCEL_ANSWER_SECONDS = 1.0


@dataclass
class InFlightRequest:
    """One request being served."""

    request_id: str
    method: str
    path: str
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    token: CancelToken | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape for the health report."""
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "started_at": self.started_at,
            "age_seconds": round(time.monotonic() - self.started_monotonic, 3),
        }


class InFlightTracker:
    """Requests being served, by request id."""

    def __init__(self) -> None:
        self._requests: dict[str, InFlightRequest] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, request_id: str, method: str, path: str) -> None:
        """Start tracking a request."""
        self._requests[request_id] = InFlightRequest(request_id, method, path[:200])
        self._idle.clear()

    def remove(self, request_id: str) -> None:
        """Stop tracking a request."""
        self._requests.pop(request_id, None)
        if not self._requests:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once nothing is in flight."""
        await self._idle.wait()

    def attach_token(self, request_id: str | None, token: CancelToken) -> None:
        """Let the drain cancel this request's work."""
        if request_id in self._requests:
            self._requests[request_id].token = token

    def __len__(self) -> int:
        return len(self._requests)

    def snapshot(self) -> list[InFlightRequest]:
        """The tracked requests, oldest first."""
        return sorted(self._requests.values(), key=lambda r: r.started_monotonic)


@dataclass
class Runtime:
    """What one process serves with; lives on ``app.state.runtime``."""

    settings: Settings
    scheduler: Scheduler
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    engine: Engine | None = None
    artifact: ModelArtifact | None = None
    load_seconds: float | None = None
    last_inference_monotonic: float | None = None
    draining: bool = False
    drain_started_monotonic: float | None = None
    in_flight: InFlightTracker = field(default_factory=InFlightTracker)
    monitor: HealthMonitor | None = None
    storage: GcsStorage = field(init=False)
    jobs: JobRunner | None = None

    def __post_init__(self) -> None:
        self.storage = GcsStorage(self.settings)

    @property
    def ready(self) -> bool:
        """Model loaded and warmed up."""
        return self.engine is not None

    def model_state(self) -> tuple[bool, float | None]:
        """(loaded, seconds since the last successful inference) for the monitor."""
        last = self.last_inference_monotonic
        return self.engine is not None, None if last is None else time.monotonic() - last

    def inference_succeeded(self) -> None:
        """Record a successful inference (its age is a health figure)."""
        self.last_inference_monotonic = time.monotonic()


def load_model(settings: Settings) -> tuple[ModelArtifact, Engine, float]:
    """Resolve, load and warm up the configured model (blocking)."""
    started = time.monotonic()
    artifact = resolve_model(settings.model, settings.engine, settings.model_cache_dir)
    engine = load_engine(settings, artifact)
    if settings.warmup:
        # One pass over a second of low noise: pays for lazy allocations and kernel
        # selection before the first real request does.
        noise = np.random.default_rng(0).normal(0, 1e-3, SAMPLE_RATE).astype(np.float32)
        engine.transcribe(noise, TranscribeOptions(beam_size=1, temperature=0.0))
    return artifact, engine, time.monotonic() - started


async def _load_in_background(runtime: Runtime) -> None:
    settings = runtime.settings
    log.info("model_loading", model=settings.model, engine=settings.engine.value)
    try:
        artifact, engine, seconds = await asyncio.to_thread(load_model, settings)
    except Exception as exc:
        log.critical("model_load_failed", model=settings.model, error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)
    runtime.artifact, runtime.engine, runtime.load_seconds = artifact, engine, seconds
    metrics.MODEL_LOADED.labels(settings.engine.value, settings.model).set(1)
    metrics.MODEL_LOAD_SECONDS.labels(settings.engine.value, settings.model).set(seconds)
    if runtime.monitor is not None:
        runtime.monitor.sample()  # the model check must not say "not loaded" until the next tick
    log.info(
        "model_ready",
        model=artifact.name,
        source=artifact.source,
        engine=settings.engine.value,
        load_seconds=round(seconds, 3),
    )


SignalHandler = Callable[[int, FrameType | None], Any]


class Drainer:
    """Turns SIGTERM/SIGINT into the drain described in this module's docstring.

    Installed over the server's own handlers (uvicorn's), which it calls, or whose
    server it tells to exit, once the drain is over.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._previous: dict[int, SignalHandler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Chain onto SIGTERM and SIGINT; call from the event loop's (main) thread."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            # Embedded in a test client or another host's thread: signals are not ours.
            log.warning("drain_handler_not_installed", reason="not the main thread")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.runtime.draining:
            # A second signal: the server's own handling (SIGINT twice forces exit).
            previous = self._previous.get(sig)
            if previous is not None:
                previous(sig, frame)
            return
        self.runtime.draining = True
        metrics.DRAINING.set(1)
        # Requests already accepted (even if still uploading or decoding) are in flight
        # and may finish; DrainMiddleware refuses only the ones that arrive from now on.
        self.runtime.drain_started_monotonic = time.monotonic()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._start, sig, frame)

    def _start(self, sig: int, frame: FrameType | None) -> None:
        self._task = asyncio.create_task(self.drain(sig, frame))

    async def drain(self, sig: int, frame: FrameType | None) -> None:
        """Wait for in-flight work, cancel what outlives the timeout, then exit."""
        runtime, timeout = self.runtime, self.runtime.settings.drain_timeout_seconds
        started = runtime.drain_started_monotonic or time.monotonic()
        log.info(
            "drain_started",
            signal=signal.Signals(sig).name,
            in_flight=len(runtime.in_flight),
            drain_timeout_seconds=timeout,
        )
        jobs = runtime.jobs
        if jobs is not None:
            await jobs.begin_drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, started + timeout - time.monotonic())):
                await runtime.in_flight.wait_idle()
                if jobs is not None:
                    await jobs.wait_idle()
        if jobs is not None:
            await jobs.hand_over_all()
        leftovers = runtime.in_flight.snapshot()
        if leftovers:
            log.warning(
                "drain_timeout_cancelling",
                requests=[r.as_dict() for r in leftovers],
                drain_timeout_seconds=timeout,
            )
            for request in leftovers:
                if request.token is not None:
                    request.token.cancel("shutting_down")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_ANSWER_SECONDS):
                    await runtime.in_flight.wait_idle()
        log.info(
            "drain_complete",
            seconds=round(time.monotonic() - started, 3),
            cancelled=len(leftovers),
        )
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous.get(sig)
        server = getattr(previous, "__self__", None)
        if server is not None and hasattr(server, "should_exit"):
            # uvicorn's Server: asking it to exit directly (rather than through its
            # signal handler, which re-raises the signal at the end) exits with 0.
            server.should_exit = True
        elif previous is not None:
            previous(sig, frame)
        else:
            signal.raise_signal(sig)


def _open_job_store(storage: GcsStorage) -> JobStore:
    """The configured job store, or a boot error naming the setting: a service that
    accepted jobs it cannot keep would lose them."""
    location = str(storage.settings.jobs_store)
    try:
        objects = open_objects(location, storage)
    except Exception as exc:
        log.critical(
            "job_store_unusable", setting="WHISPER_JOBS_STORE", store=location, error=str(exc)
        )
        os._exit(BOOT_ERROR_EXIT_CODE)
    return JobStore(objects)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the model load, the health monitor and the drain handler."""
    runtime: Runtime = app.state.runtime
    runtime.monitor = HealthMonitor(runtime.settings, runtime.model_state)
    runtime.monitor.start()
    Drainer(runtime).install()
    loader = asyncio.create_task(_load_in_background(runtime))
    settings = runtime.settings
    if settings.jobs_store:
        store = _open_job_store(runtime.storage)
        monitor = runtime.monitor
        runtime.jobs = JobRunner(
            settings,
            store,
            runtime.scheduler,
            runtime.storage,
            lambda: runtime.engine,
            memory_critical=lambda: monitor.memory_critical,
        )
        runtime.jobs.start()
    try:
        yield
    finally:
        loader.cancel()
        if runtime.jobs is not None:
            # A shutdown without the drain (gunicorn recycling the worker after
            # max_requests, an exception in the server) must hand jobs over too, or
            # they would wait out their lease and count as interrupted.
            await runtime.jobs.hand_over_all()
            await runtime.jobs.close()
        await runtime.monitor.stop()
        runtime.scheduler.close()
