"""The service's whole configuration: one pydantic-settings model.

Precedence, highest first: explicit keyword arguments, environment variables, the
preset chosen by ``APP_ENV``, the field defaults. Every field is bounded; an invalid
value fails at startup with :class:`SettingsError`, whose message names the
environment variable, the value given and what is allowed.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "WHISPER_"


class AppEnv(StrEnum):
    """Deployment environment; picks a preset of defaults."""

    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


class EngineName(StrEnum):
    """Inference backends."""

    FASTER_WHISPER = "faster-whisper"
    OPENAI_WHISPER = "openai-whisper"


# Figures per environment (DESIGN.md section 4). Only what differs from the field
# defaults is listed; docs/configuration.md explains each choice.
PRESETS: dict[AppEnv, dict[str, Any]] = {
    AppEnv.PRODUCTION: {
        "log_level": "INFO",
        "log_format": "json",
        "memory_limit_mib": 2048,
        "cpu_limit": 2,
        "min_instances": 1,
        "max_instances": 10,
        # Concurrency = inference workers + queue: Cloud Run must not route more
        # requests to an instance than its admission control accepts (the plan's 80
        # would turn 72 of them into 429s instead of scaling out).
        "container_concurrency": 8,
        "queue_size": 7,
        "request_timeout_seconds": 300.0,
    },
    AppEnv.STAGING: {
        "log_level": "DEBUG",
        "log_format": "json",
        "memory_limit_mib": 1024,
        "cpu_limit": 1,
        "min_instances": 0,
        "max_instances": 5,
        "container_concurrency": 4,
        "queue_size": 3,
        "request_timeout_seconds": 300.0,
    },
    AppEnv.DEVELOPMENT: {
        "log_level": "DEBUG",
        "log_format": "console",
        "memory_limit_mib": 512,
        "cpu_limit": 1,
        "min_instances": 0,
        "max_instances": 2,
        "container_concurrency": 4,
        "queue_size": 3,
        "request_timeout_seconds": 300.0,
    },
}


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message lists every problem."""


class _PresetSource(PydanticBaseSettingsSource):
    """Supplies the APP_ENV preset below explicit arguments and environment variables."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole preset

    def __call__(self) -> dict[str, Any]:
        chosen = self.current_state.get("app_env") or os.environ.get("APP_ENV") or "production"
        try:
            env = AppEnv(str(chosen).lower())
        except ValueError:
            return {}  # the app_env field's own validation reports the bad value
        return dict(PRESETS[env])


class Settings(BaseSettings):
    """Configuration of one service instance. Environment variables use the prefix
    ``WHISPER_`` (``WHISPER_ENGINE``), except ``APP_ENV`` and ``PORT``, which follow the
    platform's conventions."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    app_env: AppEnv = Field(
        AppEnv.PRODUCTION,
        validation_alias=AliasChoices("app_env", "APP_ENV"),
        description="Preset of defaults: production, staging or development.",
    )

    # --- serving ---
    host: str = Field("0.0.0.0", description="Address to bind.")
    port: int = Field(
        8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("port", "PORT"),
        description="TCP port (Cloud Run sets PORT).",
    )
    web_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="gunicorn worker processes; each loads its own copy of the model.",
    )

    # --- model and engine ---
    engine: EngineName = Field(EngineName.FASTER_WHISPER, description="Inference backend.")
    model: str = Field(
        "tiny.en",
        min_length=1,
        description="Model spec: embedded name (tiny.en, base), openai-whisper name, "
        "path to a .pt file or CTranslate2 folder, or gs://bucket/prefix.",
    )
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "whisper-service",
        description="Where converted and downloaded models are kept.",
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="Inference device.")
    compute_type: Literal["default", "int8", "int8_float32", "float32", "float16"] = Field(
        "int8",
        description="faster-whisper precision (int8 is fastest on CPU); the openai-whisper "
        "engine always computes in float32 on CPU.",
    )
    cpu_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Intra-op threads per inference worker; 0 = available CPUs / workers.",
    )
    warmup: bool = Field(True, description="Run one inference on silence before ready.")

    # --- scheduling and limits ---
    inference_workers: int = Field(1, ge=1, le=32, description="Concurrent inferences per process.")
    queue_size: int = Field(
        7, ge=0, le=10_000, description="Requests allowed to wait for a worker; beyond: 429."
    )
    queue_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest wait for a worker before 503."
    )
    request_timeout_seconds: float = Field(
        300.0, gt=0, le=3600, description="Deadline for one request, queue wait included."
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1024,
        le=2 * 1024**3,
        description="Largest accepted upload, in bytes.",
    )
    max_audio_seconds: float = Field(
        1800.0, gt=0, le=4 * 3600, description="Longest accepted audio after decoding."
    )
    default_beam_size: int = Field(5, ge=1, le=16, description="Beam size when not given.")

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Minimum log severity."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one Cloud Logging object per line; console: for people."
    )

    # --- deployment shape (rendered into Cloud Run manifests) ---
    memory_limit_mib: int = Field(2048, ge=256, le=32768, description="Container memory.")
    cpu_limit: int = Field(2, ge=1, le=8, description="Container CPUs.")
    min_instances: int = Field(1, ge=0, le=100, description="Cloud Run minimum instances.")
    max_instances: int = Field(10, ge=1, le=100, description="Cloud Run maximum instances.")
    container_concurrency: int = Field(
        8, ge=1, le=1000, description="Cloud Run requests per instance."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("app_env", "engine", mode="before")
    @classmethod
    def _lower_enum(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _PresetSource(settings_cls))

    def threads_per_worker(self, cpus: int) -> int:
        """Intra-op threads for each inference worker given ``cpus`` usable CPUs."""
        if self.cpu_threads:
            return self.cpu_threads
        return max(1, cpus // self.inference_workers)


def env_var_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    if field_name in ("app_env", "port"):
        return field_name.upper()
    return f"{ENV_PREFIX}{field_name.upper()}"


def _describe(error: dict[str, Any]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    value = error.get("input")
    return f"{env_var_name(field)}={value!r}: {error['msg']}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, raising SettingsError with every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
