"""How much memory a model needs per gunicorn worker, by engine and precision.

Measured on this project's CI machine (process RSS after loading and transcribing
60 s of speech: ``tiny.en`` and ``base``); other sizes are estimated from those
measurements plus the parameter count times the bytes per parameter. The service's
own libraries (FastAPI, OpenTelemetry...) add ``SERVICE_OVERHEAD_MIB``.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisper_service.capacity.memory import (
    DIARIZATION_MIB,
    MIN_BUDGET_MIB,
    running_inference_mib,
)
from whisper_service.config import Settings

SERVICE_OVERHEAD_MIB = 100


@dataclass(frozen=True)
class ModelFootprint:
    """Parameters (millions) and measured resident sizes (MiB) where known."""

    params_m: float
    measured: dict[tuple[str, str], int]


# (engine, precision) -> MiB, measured with scripts in docs/benchmarks.md.
_TINY = {
    ("faster-whisper", "int8"): 268,
    ("faster-whisper", "float32"): 413,
    ("openai-whisper", "float32"): 660,
}
_BASE = {("faster-whisper", "int8"): 363, ("openai-whisper", "float32"): 853}

FOOTPRINTS: dict[str, ModelFootprint] = {
    "tiny": ModelFootprint(39, _TINY),
    "tiny.en": ModelFootprint(39, _TINY),
    "base": ModelFootprint(74, _BASE),
    "base.en": ModelFootprint(74, _BASE),
    "small": ModelFootprint(244, {}),
    "small.en": ModelFootprint(244, {}),
    "medium": ModelFootprint(769, {}),
    "medium.en": ModelFootprint(769, {}),
    "large-v1": ModelFootprint(1550, {}),
    "large-v2": ModelFootprint(1550, {}),
    "large-v3": ModelFootprint(1550, {}),
    "large": ModelFootprint(1550, {}),
    "large-v3-turbo": ModelFootprint(809, {}),
    "turbo": ModelFootprint(809, {}),
}
BYTES_PER_PARAM = {"int8": 1, "int8_float32": 1, "float16": 2, "float32": 4, "default": 1}


def precision(engine: str, compute_type: str) -> str:
    """The precision whose memory to budget: openai-whisper is counted in float32 (the
    int8 path keeps the float token embedding); CTranslate2's "default" is float32."""
    if engine == "openai-whisper" or compute_type == "default":
        return "float32"
    return compute_type


def engine_mib(model: str, engine: str, compute_type: str) -> int | None:
    """Resident MiB of one loaded model with its engine, or None for an unknown model."""
    footprint = FOOTPRINTS.get(model)
    if footprint is None:
        return None
    prec = precision(engine, compute_type)
    if (engine, prec) in footprint.measured:
        return footprint.measured[(engine, prec)]
    # Scale from the measured base model: the same runtime, more weights.
    anchor = FOOTPRINTS["base"]
    base_prec = "float32" if engine == "openai-whisper" else "int8"
    extra_params = footprint.params_m - anchor.params_m
    extra_mib = extra_params * BYTES_PER_PARAM.get(prec, 4)
    precision_mib = anchor.params_m * (BYTES_PER_PARAM.get(prec, 4) - BYTES_PER_PARAM[base_prec])
    return round(anchor.measured[(engine, base_prec)] + extra_mib + precision_mib)


def process_need_mib(
    model: str,
    engine: str,
    compute_type: str,
    inference_workers: int,
    web_workers: int,
    diarization: bool = False,
) -> int | None:
    """MiB the container needs: each gunicorn worker holds the service plus its model
    (and the diarization's share); openai-whisper keeps one model replica per
    inference worker."""
    one = engine_mib(model, engine, compute_type)
    if one is None:
        return None
    footprint = FOOTPRINTS[model]
    if engine == "openai-whisper":
        replica = footprint.params_m * BYTES_PER_PARAM["float32"]
        per_worker = one + replica * (inference_workers - 1)
    else:
        per_worker = one + 50 * (inference_workers - 1)  # activations; weights are shared
    speakers = DIARIZATION_MIB if diarization else 0
    return round(web_workers * (per_worker + SERVICE_OVERHEAD_MIB + speakers))


def settings_need_mib(settings: Settings) -> int | None:
    """``process_need_mib`` for the model, engine, precision and workers of ``settings``."""
    return process_need_mib(
        settings.model,
        settings.engine.value,
        settings.compute_type,
        settings.inference_workers,
        settings.web_workers,
        settings.diarization,
    )


def audio_budget_mib(settings: Settings) -> int | None:
    """The decoded-audio budget a deployment of ``settings`` gets (see capacity.memory):
    WHISPER_AUDIO_MEMORY_MIB, or estimated from this table as the process would derive
    it from its own size; None for a model the table does not know."""
    if settings.audio_memory_mib:
        return settings.audio_memory_mib
    need = settings_need_mib(settings)
    if need is None:
        return None
    ceiling = settings.memory_limit_mib * settings.health_memory_degraded_percent / 100
    # Deployed manifests always have a job store (docs/jobs.md).
    running = running_inference_mib(settings, jobs=True)
    return max(round((ceiling - need) / settings.web_workers - running), MIN_BUDGET_MIB)
