"""What one process serves with: settings, scheduler, model, monitor, jobs, drain state;
and the background load that makes it ready.

One ``Runtime`` lives on ``app.state.runtime``; the API reaches it through FastAPI
dependencies (``api/deps.py``), the lifespan fills it in.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil
import structlog

from whisper_service.audio import decoded_bytes
from whisper_service.capacity.goodput import Goodput
from whisper_service.capacity.memory import AudioMemory, audio_budget_bytes
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import Settings
from whisper_service.engines.base import Engine
from whisper_service.models import ModelArtifact
from whisper_service.observability import metrics
from whisper_service.serving.health import HealthMonitor
from whisper_service.serving.inflight import InFlightTracker
from whisper_service.serving.resources import memory_limit_bytes
from whisper_service.serving.startup import (
    BOOT_ERROR_EXIT_CODE,
    EngineLoader,
    LoadedModel,
    load_diarization,
    load_model,
)
from whisper_service.storage import GcsStorage

log = structlog.get_logger(__name__)

# The model id OpenAI's clients send; it names whatever model this instance serves.
OPENAI_MODEL_ALIAS = "whisper-1"


class BackgroundJobs(Protocol):
    """What serving asks of the jobs side (``jobs.service.Jobs``, which ``app.py``
    starts through ``Runtime.start_jobs``): it drains, stops and reports them, and never
    imports them."""

    async def begin_drain(self) -> None:
        """Take no new deliveries."""

    async def wait_idle(self) -> None:
        """Return once no unit is running."""

    async def stop_all(self) -> None:
        """Stop running units at their next checkpoint."""

    async def close(self) -> None:
        """Release the store, files and queue."""

    def stats(self) -> dict[str, object]:
        """For the health report."""


@dataclass
class Runtime:
    """The state of one serving process."""

    settings: Settings
    scheduler: Scheduler
    load: EngineLoader = load_model
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
    audio_memory: AudioMemory = field(init=False)
    goodput: Goodput = field(init=False)
    # How this process starts its jobs (app.py gives it when jobs are configured), and
    # the jobs once started.
    start_jobs: Callable[[Runtime], BackgroundJobs] | None = None
    jobs: BackgroundJobs | None = None
    realtime_sessions: int = 0  # live WebSocket sessions open now
    realtime_clients: dict[str, int] = field(default_factory=dict)  # sessions per client
    realtime_finals: int = 0  # live turns' finals waiting or decoding now
    realtime_partials: int = 0  # live turns' partials decoding now

    def __post_init__(self) -> None:
        self.storage = GcsStorage(self.settings)
        self.audio_memory = AudioMemory(self.audio_budget())
        self.goodput = Goodput(
            lambda: self.scheduler.busy_seconds,
            enabled=self.settings.goodput_admission,
            jobs=bool(self.settings.jobs_store),
        )

    def audio_budget(self) -> int:
        """The decoded-audio budget for this process as it is now (see capacity.memory)."""
        rss = psutil.Process().memory_info().rss
        return audio_budget_bytes(self.settings, memory_limit_bytes(), rss)

    @property
    def ready(self) -> bool:
        """Model loaded and warmed up."""
        return self.engine is not None

    @property
    def model_name(self) -> str:
        """The served model's name (the configured spec until it has loaded)."""
        return self.artifact.name if self.artifact else self.settings.model

    def served_model_ids(self) -> list[str]:
        """Model ids a client may ask for: the served model and OpenAI's alias."""
        return [self.model_name, OPENAI_MODEL_ALIAS]

    def model_ready(self, loaded: LoadedModel) -> None:
        """The model has loaded: serve with it."""
        self.artifact, self.engine, self.load_seconds = (
            loaded.artifact,
            loaded.engine,
            loaded.seconds,
        )
        # Derived from what the process holds now that its model is loaded.
        self.audio_memory.limit = self.audio_budget()
        if self.monitor is not None:
            self.monitor.sample()  # the model check must not say "not loaded" until the next tick

    def model_state(self) -> tuple[bool, float | None]:
        """(loaded, seconds since the last successful inference) for the monitor."""
        last = self.last_inference_monotonic
        return self.engine is not None, None if last is None else time.monotonic() - last

    def inference_succeeded(self) -> None:
        """Record a successful inference (its age is a health figure)."""
        self.last_inference_monotonic = time.monotonic()


async def load_in_background(runtime: Runtime) -> None:
    """Load the model off the event loop and make the runtime ready; exit the process
    with BOOT_ERROR_EXIT_CODE if it cannot be loaded."""
    settings = runtime.settings
    log.info("model_loading", model=settings.model, engine=settings.engine.value)
    try:
        loaded = await asyncio.to_thread(runtime.load, settings)
    except Exception as exc:
        log.critical("model_load_failed", model=settings.model, error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)
    runtime.model_ready(loaded)
    metrics.MODEL_LOADED.labels(settings.engine.value, settings.model).set(1)
    metrics.MODEL_LOAD_SECONDS.labels(settings.engine.value, settings.model).set(loaded.seconds)
    budget = runtime.audio_memory.limit
    log.info(
        "model_ready",
        model=loaded.artifact.name,
        source=loaded.artifact.source,
        engine=loaded.engine.name,
        load_seconds=round(loaded.seconds, 3),
        audio_memory_mib=round(budget / 2**20),
        # How many requests of the longest accepted audio it holds at once.
        longest_requests_held=budget // decoded_bytes(settings.max_audio_seconds),
    )
    if settings.diarization:
        await load_diarization(settings)
