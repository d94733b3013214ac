"""Startup: the configured model resolved, loaded into its engine and warmed up.

The HTTP server answers (``/health/live``) while this runs in a thread; readiness
waits for it. A model that cannot be loaded ends the process with exit code 3, which
gunicorn treats as a boot error (it stops instead of restarting the worker in a loop).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from whisper_service.audio import SAMPLE_RATE
from whisper_service.config import EngineName, Settings
from whisper_service.engines.base import Engine, TranscribeOptions
from whisper_service.models import ModelArtifact, ModelFormat, ModelNotFound, resolve_model
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.resources import available_cpus

log = structlog.get_logger(__name__)

BOOT_ERROR_EXIT_CODE = 3
# The format each engine loads.
MODEL_FORMATS = {
    EngineName.FASTER_WHISPER: ModelFormat.CTRANSLATE2,
    EngineName.OPENAI_WHISPER: ModelFormat.OPENAI_WHISPER,
}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: where it came from, the engine holding it, and how long
    resolving, loading and warming up took."""

    artifact: ModelArtifact
    engine: Engine
    seconds: float


EngineLoader = Callable[[Settings], LoadedModel]


def resolve_configured_model(
    settings: Settings, engine: EngineName | None = None, *, allow_download: bool = False
) -> ModelArtifact:
    """The configured model, in the format ``engine`` (default: the configured one) loads.
    Raises ModelNotFound when the engine itself is not installed (the lean image)."""
    engine = engine or settings.engine
    if engine is EngineName.OPENAI_WHISPER and importlib.util.find_spec("whisper") is None:
        raise ModelNotFound(
            "WHISPER_ENGINE=openai-whisper, but this installation has no openai-whisper: "
            "the lean image (Dockerfile.secure built with ENGINES=faster-whisper) leaves it "
            "and torch out. Use WHISPER_ENGINE=faster-whisper, or the default image."
        )
    return resolve_model(
        settings.model,
        MODEL_FORMATS[engine],
        settings.model_cache_dir,
        allow_download=allow_download,
    )


def load_engine(settings: Settings, artifact: ModelArtifact) -> Engine:
    """Load ``artifact`` into the engine ``settings.engine`` names, sized for the CPUs
    this process may really use. Each engine module is imported only when chosen: one
    pulls in torch, the other CTranslate2."""
    shape: dict[str, Any] = {
        "device": settings.device,
        "compute_type": settings.compute_type,
        "threads": settings.threads_per_worker(available_cpus()),
        "workers": settings.inference_workers,
    }
    if settings.engine is EngineName.OPENAI_WHISPER:
        from whisper_service.engines.openai_whisper_engine import OpenAIWhisperEngine

        return OpenAIWhisperEngine(artifact, **shape)
    from whisper_service.engines.batching import BatchLimits
    from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine

    batch = BatchLimits(
        max_size=settings.batch_size,
        max_wait=settings.batch_max_wait_ms / 1000,
        concurrency=settings.inference_workers,
    )
    return FasterWhisperEngine(artifact, **shape, batch=batch, batch_report=telemetry.batch_ran)


def load_model(settings: Settings) -> LoadedModel:
    """Resolve, load and warm up the configured model (blocking)."""
    started = time.monotonic()
    artifact = resolve_configured_model(settings)
    engine = load_engine(settings, artifact)
    if settings.warmup:
        # One pass over a second of low noise: pays for lazy allocations and kernel
        # selection before the first real request does.
        noise = np.random.default_rng(0).normal(0, 1e-3, SAMPLE_RATE).astype(np.float32)
        engine.transcribe(noise, TranscribeOptions(beam_size=1, temperature=0.0))
    return LoadedModel(artifact, engine, time.monotonic() - started)


async def load_diarization(settings: Settings) -> None:
    """Load the speaker encoder and clustering once the model serves (about 2 s:
    readiness need not wait for them; a diarization asked for meanwhile waits for the
    load). Missing weights are a broken image: exit as for a model."""
    from whisper_service.diarization.speakers import warm_up

    started = time.monotonic()
    try:
        await asyncio.to_thread(
            warm_up, settings.model_cache_dir, settings.threads_per_worker(available_cpus())
        )
    except Exception as exc:
        log.critical("diarization_load_failed", error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)
    log.info("diarization_ready", load_seconds=round(time.monotonic() - started, 3))
