"""Inference engines behind one protocol; :func:`load_engine` picks one from Settings."""

from __future__ import annotations

from whisper_service.engines.base import Engine
from whisper_service.models import ModelArtifact, ModelFormat
from whisper_service.resources import available_cpus
from whisper_service.settings import EngineName, Settings


def load_engine(settings: Settings, artifact: ModelArtifact) -> Engine:
    """Load ``artifact`` into the engine ``settings.engine`` names, sized for the CPUs
    this process may really use."""
    threads = settings.threads_per_worker(available_cpus())
    if settings.engine is EngineName.OPENAI_WHISPER:
        if artifact.format is not ModelFormat.OPENAI_WHISPER:
            raise ValueError(f"openai-whisper cannot load a {artifact.format} model")
        from whisper_service.engines.openai_whisper_engine import OpenAIWhisperEngine

        return OpenAIWhisperEngine(
            artifact,
            device=settings.device,
            compute_type=settings.compute_type,
            threads=threads,
            workers=settings.inference_workers,
        )
    from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine

    return FasterWhisperEngine(
        artifact,
        device=settings.device,
        compute_type=settings.compute_type,
        threads=threads,
        workers=settings.inference_workers,
    )


__all__ = ["Engine", "load_engine"]
