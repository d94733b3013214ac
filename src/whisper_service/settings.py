"""The service's whole configuration: one pydantic-settings model.

Precedence, highest first: explicit keyword arguments, environment variables, the
preset chosen by ``APP_ENV``, the field defaults. Every field is bounded; an invalid
value fails at startup with :class:`SettingsError`, whose message names the
environment variable, the value given and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "WHISPER_"
# Time between the end of the drain and the platform's SIGKILL: cancelled requests
# are answered and the process exits in it.
SHUTDOWN_MARGIN_SECONDS = 1.5


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
        # Two single-threaded inference workers on 2 CPUs: 1.9x the throughput of one
        # two-threaded worker at the same latency (docs/benchmarks.md).
        "inference_workers": 2,
        "queue_size": 6,
        "request_timeout_seconds": 300.0,
        "auth_required": True,
        "rate_limit_per_minute": 120.0,
        # Only Cloud Run's front end can reach the container; it sets X-Forwarded-For.
        "forwarded_allow_ips": "*",
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
        "rate_limit_per_minute": 120.0,
        "forwarded_allow_ips": "*",
    },
    AppEnv.DEVELOPMENT: {
        # int8 fits 512 MiB (float32 would not, under the 80 % rule); a laptop favours
        # speed over the one word int8 loses on the LJSpeech set.
        "compute_type": "int8",
        "log_level": "DEBUG",
        "log_format": "console",
        "memory_limit_mib": 512,
        "cpu_limit": 1,
        "min_instances": 0,
        "max_instances": 2,
        "container_concurrency": 4,
        "queue_size": 3,
        "request_timeout_seconds": 300.0,
        # One machine: a local directory survives restarts, which is all it needs; /tmp
        # is what a read-only container can write. The store refuses a directory that
        # another user owns or can write.
        "jobs_store": "/tmp/whisper-service/jobs",  # noqa: S108
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
    host: str = Field("0.0.0.0", description="Address to listen on (`make run` uses 127.0.0.1).")
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
        description="gunicorn worker processes; each loads its own model copy, so memory "
        "grows with it.",
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

    # --- scheduling and limits ---
    inference_workers: int = Field(
        1, ge=1, le=32, description="Inferences running at once per process."
    )
    queue_size: int = Field(
        7,
        ge=0,
        le=10_000,
        description="Requests allowed to wait for an inference worker; beyond it: 429 at once.",
    )
    queue_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait for an inference worker, then 503 queue_timeout.",
    )
    request_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Deadline of the whole request, queue wait included, then 504.",
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

    # --- lifecycle ---
    drain_timeout_seconds: float = Field(
        8.0,
        gt=0,
        le=3600,
        description="After SIGTERM, how long in-flight and queued requests may take.",
    )
    platform_grace_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Time the platform allows between SIGTERM and SIGKILL (Cloud Run: 10).",
    )
    max_requests: int = Field(
        10_000, ge=0, le=10_000_000, description="Recycle a worker after this many; 0 = never."
    )
    max_requests_jitter: int = Field(
        1_000, ge=0, le=1_000_000, description="Random spread of max_requests across workers."
    )

    # --- health monitor ---
    health_sample_interval_seconds: float = Field(
        2.0, gt=0, le=300, description="How often the health monitor samples."
    )
    health_window_seconds: float = Field(
        300.0, ge=10, le=86_400, description="Rolling window for health trends."
    )
    health_cpu_degraded_percent: float = Field(
        90.0, ge=0, le=100, description="CPU use (of the CPU limit) reported as degraded."
    )
    health_cpu_unhealthy_percent: float | None = Field(
        None, ge=0, le=100, description="CPU use reported as unhealthy; unset = never."
    )
    health_memory_degraded_percent: float = Field(
        80.0, ge=0, le=100, description="Memory use (of the container limit): degraded."
    )
    health_memory_unhealthy_percent: float = Field(
        92.0,
        ge=0,
        le=100,
        description="Memory use: unhealthy; new transcriptions get 503 above it.",
    )
    health_loop_lag_degraded_seconds: float = Field(
        0.1, gt=0, le=60, description="Event-loop lag reported as degraded."
    )
    health_loop_lag_unhealthy_seconds: float = Field(
        1.0, gt=0, le=600, description="Event-loop lag reported as unhealthy."
    )
    health_disk_free_degraded_mib: float = Field(
        1024.0, ge=0, description="Free space in the temp directory below which: degraded."
    )
    health_disk_free_unhealthy_mib: float = Field(
        256.0, ge=0, description="Free space in the temp directory below which: unhealthy."
    )

    # --- security and abuse limits ---
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys, comma-separated (a secret: shown redacted).",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key per line (a mounted secret)."
    )
    auth_required: bool = Field(
        False,
        description="Require an API key on every route but the health endpoints; serve "
        "refuses to start without one.",
    )
    health_public: bool = Field(
        True, description="Health and metrics endpoints answer without an API key."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, comma-separated."
    )
    rate_limit_per_minute: float = Field(
        0.0, ge=0, le=1_000_000, description="Requests per minute per client; 0 = no limit."
    )
    rate_limit_burst: int = Field(
        10, ge=1, le=100_000, description="Requests a client may send at once."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxies trusted for X-Forwarded-For (gunicorn/uvicorn)."
    )

    # --- Google Cloud Storage ---
    gcs_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Buckets gcs_uri inputs may come from, comma-separated; none = no gs:// input.",
    )
    gcs_output_uri: str | None = Field(
        None,
        pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$",
        description="gs://bucket/prefix where transcripts are written when a request asks.",
    )
    gcs_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Deadline of one GCS call, retries included."
    )

    # --- async jobs (long audio) ---
    jobs_store: str | None = Field(
        None,
        description="Where job state, inputs and results live: gs://bucket/prefix (shared by "
        "every instance) or an absolute local directory (one machine); unset = no /jobs.",
    )
    jobs_max_active: int = Field(
        4,
        ge=1,
        le=1000,
        description="Jobs one instance holds at once (queued + running); beyond it POST /jobs "
        "gets 429.",
    )
    jobs_concurrency: int = Field(
        1, ge=1, le=32, description="Jobs one instance transcribes at once."
    )
    jobs_batch_size: int = Field(
        8,
        ge=1,
        le=64,
        description="Windows decoded together in one pass (faster-whisper's batched "
        "pipeline); progress and checkpoints advance per batch.",
    )
    jobs_chunking: Literal["vad", "fixed"] = Field(
        "vad",
        description="How long audio is cut into windows of at most 30 s: vad = at pauses "
        "(silence skipped), fixed = back-to-back 30 s windows.",
    )
    jobs_max_audio_seconds: float = Field(
        7200.0,
        gt=0,
        le=24 * 3600,
        description="Longest audio a job accepts (decoded audio takes 230 MB per hour).",
    )
    jobs_retention_seconds: float = Field(
        7 * 86_400.0,
        ge=60,
        le=365 * 86_400,
        description="How long finished jobs and their results are kept, then deleted.",
    )
    jobs_lease_seconds: float = Field(
        60.0,
        ge=2,
        le=3600,
        description="A job whose instance has not renewed its lease for this long is taken "
        "over (resumed from its last checkpoint) by another instance or a restart.",
    )
    jobs_sweep_interval_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How often an instance looks for abandoned and expired jobs.",
    )
    jobs_max_interruptions: int = Field(
        2,
        ge=0,
        le=100,
        description="Times a job may lose its instance without a hand-over (crash, OOM "
        "kill) and still be resumed; one more and it fails. A draining instance hands its "
        "jobs over, which does not count.",
    )

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Minimum log severity."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json: one Cloud Logging object per line; console: for people."
    )
    log_transcripts: bool = Field(
        False, description="Include transcript text in logs (off: it is user content)."
    )
    gcp_project: str | None = Field(
        None,
        validation_alias=AliasChoices("gcp_project", "WHISPER_GCP_PROJECT", "GOOGLE_CLOUD_PROJECT"),
        description="Project for Cloud Logging's trace field (projects/<p>/traces/<id>).",
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

    @field_validator("api_keys", "cors_origins", "gcs_allowed_buckets", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("jobs_store")
    @classmethod
    def _store_location(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("gs://"):
            if not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?", value):
                raise ValueError("must be gs://bucket[/prefix] with a valid bucket name")
        elif not Path(value).is_absolute():
            raise ValueError("must be gs://bucket[/prefix] or an absolute directory path")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if self.drain_timeout_seconds + SHUTDOWN_MARGIN_SECONDS > self.platform_grace_seconds:
            problems.append(
                f"{env_var_name('drain_timeout_seconds')}={self.drain_timeout_seconds:g} "
                f"leaves less than {SHUTDOWN_MARGIN_SECONDS:g} s before the platform's SIGKILL "
                f"({env_var_name('platform_grace_seconds')}={self.platform_grace_seconds:g})"
            )
        for low, high in (
            ("health_memory_degraded_percent", "health_memory_unhealthy_percent"),
            ("health_loop_lag_degraded_seconds", "health_loop_lag_unhealthy_seconds"),
        ):
            if getattr(self, low) > getattr(self, high):
                problems.append(f"{env_var_name(low)} must not exceed {env_var_name(high)}")
        if self.health_disk_free_unhealthy_mib > self.health_disk_free_degraded_mib:
            problems.append(
                f"{env_var_name('health_disk_free_unhealthy_mib')} must not exceed "
                f"{env_var_name('health_disk_free_degraded_mib')}"
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def check_servable(self) -> None:
        """Rules that only matter to a process about to serve traffic (secrets are
        deployed separately from configuration, so `config show` or `models prepare`
        must work without them). Raises SettingsError."""
        try:
            keys = self.all_api_keys()
        except ValueError as exc:
            raise SettingsError(f"invalid configuration:\n  {exc}") from None
        if self.auth_required and not keys:
            raise SettingsError(
                f"invalid configuration:\n  {env_var_name('auth_required')}=true but no API "
                f"key is configured: set {env_var_name('api_keys')} or "
                f"{env_var_name('api_keys_file')}"
            )

    def all_api_keys(self) -> list[str]:
        """Keys from WHISPER_API_KEYS and from the key file (blank lines and # comments
        ignored). An unreadable key file is a configuration error."""
        keys = [k.get_secret_value() for k in self.api_keys]
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                raise ValueError(
                    f"{env_var_name('api_keys_file')}: cannot read {self.api_keys_file}: "
                    f"{exc.strerror}"
                ) from None
            keys += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        return keys

    def environment(self, exclude: Collection[str] = ()) -> dict[str, str]:
        """The environment variables that reproduce these settings: unset and empty
        values left out, lists comma-separated, booleans lower-case, secrets redacted."""
        env = {}
        for field, value in self.model_dump(mode="json").items():
            if field in exclude or value is None or value == []:
                continue
            if isinstance(value, list):
                text = ",".join(map(str, value))
            elif isinstance(value, bool):
                text = str(value).lower()
            else:
                text = str(value)
            env[env_var_name(field)] = text
        return env

    @property
    def gunicorn_timeout_seconds(self) -> int:
        """gunicorn's worker timeout: the request deadline plus a margin. Inference runs
        off the event loop, so a worker silent for this long is truly stuck."""
        return int(self.request_timeout_seconds) + 30

    @property
    def graceful_timeout_seconds(self) -> int:
        """How long gunicorn lets a worker finish after SIGTERM, in whole seconds: the
        platform's own grace. The drain ends well before (validation keeps drain + margin
        inside the grace); gunicorn killing earlier than the platform would only cut off
        the answers of what the drain cancelled on a busy machine."""
        return max(
            math.ceil(self.drain_timeout_seconds + SHUTDOWN_MARGIN_SECONDS),
            int(self.platform_grace_seconds),
        )

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
    if not error.get("loc"):  # a cross-field rule: its message names the variables
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    value = "<secret>" if field == "api_keys" else error.get("input")
    return f"{env_var_name(field)}={value!r}: {error['msg']}"


def preset_settings(env: AppEnv | str, **overrides: Any) -> Settings:
    """Settings of a preset alone, ignoring this process's environment: what a
    deployment of ``env`` runs with, whoever renders it."""
    ours = [
        k
        for k in os.environ
        if k.upper().startswith(ENV_PREFIX)
        or k.upper() in ("APP_ENV", "PORT", "GOOGLE_CLOUD_PROJECT")
    ]
    saved = {k: os.environ.pop(k) for k in ours}
    try:
        return load_settings(app_env=str(env), **overrides)
    finally:
        os.environ.update(saved)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, raising SettingsError with every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
