"""Process lifecycle: load the model once at startup, warm it up, then report ready.

The HTTP server answers (``/health/live``) while the model loads; readiness waits
for the load and the warm-up pass. A model that cannot be loaded ends the process
with exit code 3, which gunicorn treats as a boot error and stops instead of
restarting the worker forever.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import structlog
from fastapi import FastAPI

from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines import load_engine
from whisper_service.engines.base import Engine, TranscribeOptions
from whisper_service.models import ModelArtifact, resolve_model
from whisper_service.scheduler import Scheduler
from whisper_service.settings import Settings

log = structlog.get_logger(__name__)

BOOT_ERROR_EXIT_CODE = 3


@dataclass
class Runtime:
    """What one process serves with; lives on ``app.state.runtime``."""

    settings: Settings
    scheduler: Scheduler
    started_at: float = field(default_factory=time.time)
    engine: Engine | None = None
    artifact: ModelArtifact | None = None
    load_seconds: float | None = None
    load_error: str | None = None

    @property
    def ready(self) -> bool:
        """Model loaded and warmed up."""
        return self.engine is not None


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
        runtime.load_error = str(exc)
        log.critical("model_load_failed", model=settings.model, error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)
    runtime.artifact, runtime.engine, runtime.load_seconds = artifact, engine, seconds
    log.info(
        "model_ready",
        model=artifact.name,
        source=artifact.source,
        engine=settings.engine.value,
        load_seconds=round(seconds, 3),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the model load; on shutdown stop taking inference work."""
    runtime: Runtime = app.state.runtime
    loader = asyncio.create_task(_load_in_background(runtime))
    try:
        yield
    finally:
        loader.cancel()
        runtime.scheduler.close()
