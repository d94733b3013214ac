"""The model: which, where from, on which engine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from whisper_service.config.fields.shared import EngineName, LowerEngine


class ModelFields(BaseModel):
    """Which model, on which engine, at which precision."""

    engine: LowerEngine = Field(EngineName.FASTER_WHISPER, description="Inference backend.")
    model: str = Field(
        "tiny.en",
        min_length=1,
        description="Model spec: embedded name (tiny.en, base), openai-whisper name, "
        "path to a .pt file or CTranslate2 folder, or gs://bucket/prefix.",
    )
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "whisper-service",
        description="Converted, assembled and downloaded models (the image uses /opt/models).",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="Inference device.")
    compute_type: Literal["default", "int8", "int8_float32", "float32", "float16"] = Field(
        "default",
        description="Precision. default = each engine's fastest that keeps the word error "
        "rate (faster-whisper float32, openai-whisper int8). faster-whisper: CTranslate2 "
        "compute type. openai-whisper: int8 = the quantized torch path, else float32.",
    )
    cpu_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Intra-op threads per inference worker; 0 = usable CPUs (cgroup quota, "
        "affinity) / inference workers.",
    )
    warmup: bool = Field(
        True, description="One inference on a second of low noise before readiness turns 200."
    )
    diarization: bool = Field(
        True,
        description="Speaker labels on request (`diarize`, `diarized_json`): the CAM++ "
        "speaker encoder (in ONNX Runtime) and scipy are loaded at startup, scikit-learn for "
        "the first recording of more than 1000 speech windows: at most about 170 MiB per "
        "worker. false = such requests are refused with 400 unsupported_option.",
    )
    diarization_max_speakers: int = Field(
        8,
        ge=1,
        le=32,
        description="Most speakers one input is split into when the caller sets no "
        "max_speakers (the largest max_speakers a caller may set).",
    )
