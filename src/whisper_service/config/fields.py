"""The settings' fields, in groups by what they configure.

Each group is a plain pydantic model; ``Settings`` combines them with the sources
(environment, preset) and the rules that span groups. Every field is bounded and
described: the description is the documentation (``whisper-service config docs``).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from whisper_service.config.presets import AppEnv


class EngineName(StrEnum):
    """Inference backends."""

    FASTER_WHISPER = "faster-whisper"
    OPENAI_WHISPER = "openai-whisper"


def split_commas(value: Any) -> Any:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; anything else as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def lowercase(value: Any) -> Any:
    """Strings lower-cased (enum values are lower-case; environments are not)."""
    return value.lower() if isinstance(value, str) else value


def uppercase(value: Any) -> Any:
    """Strings upper-cased (log levels)."""
    return value.upper() if isinstance(value, str) else value


# Lists come from the environment as "a,b,c" (NoDecode: not as JSON).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_commas)]
LowerEngine = Annotated[EngineName, BeforeValidator(lowercase)]
GCS_PREFIX_PATTERN = r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?"
# The emulator's shared push token: shorter could be guessed (`openssl rand -hex 24`).
MIN_PUSH_TOKEN_LENGTH = 32


class EnvironmentFields(BaseModel):
    """Which preset the rest starts from."""

    app_env: Annotated[AppEnv, BeforeValidator(lowercase)] = Field(
        AppEnv.PRODUCTION,
        validation_alias=AliasChoices("app_env", "APP_ENV"),
        description="Preset of defaults: production, staging or development.",
    )


class ServingFields(BaseModel):
    """Where and how the HTTP server listens."""

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


class LimitsFields(BaseModel):
    """Scheduling and the limits every request is held to."""

    inference_workers: int = Field(
        1,
        ge=1,
        le=32,
        description="Model replicas per process, each with its own threads; each runs up "
        "to WHISPER_BATCH_MAX_SIZE requests at once.",
    )
    batch_max_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests each inference worker runs at once, their decoder calls "
        "gathered into one batched call of up to this many windows (30 s each at most; "
        "faster-whisper, openai-whisper ignores it). 1: no batching, one request per "
        "worker.",
    )
    batch_max_wait_ms: float = Field(
        50.0,
        ge=0,
        le=1000,
        description="Longest a decoder call waits for others to batch with (counted from "
        "when a busy model came free); never waited when every running request is already "
        "waiting (a lone request starts at once).",
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
    audio_memory_mib: int = Field(
        0,
        ge=0,
        le=1_048_576,
        description="Decoded audio one process may hold at once (requests and jobs, 64 kB "
        "per second of audio); beyond it new work gets 503 memory_pressure. 0 = what the "
        "container's memory limit leaves after the model and the running inferences.",
    )


class LifecycleFields(BaseModel):
    """Drain, shutdown and worker recycling."""

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


class HealthFields(BaseModel):
    """The health monitor's sampling and thresholds."""

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


class SecurityFields(BaseModel):
    """API keys, CORS, rate limits and trusted proxies."""

    api_keys: SecretList = Field(
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
    admin_api_keys: SecretList = Field(
        default_factory=list,
        description="Keys that are API keys and also see internals: other callers' "
        "in-flight requests and the job store in /health, /metrics when "
        "WHISPER_METRICS_ACCESS=key. Comma-separated; a secret.",
    )
    key_id_secret: SecretStr | None = Field(
        None,
        description="Secret of the HMAC that names a key in logs, rate limits and job "
        "ownership; unset = derived from the configured keys (ids change when they do).",
    )
    health_public: bool = Field(
        True,
        description="Health probes and the /health report answer without an API key "
        "(the report's internals need an admin key either way).",
    )
    metrics_access: Literal["open", "key", "port"] = Field(
        "open",
        description="Who may read the Prometheus metrics: open = anyone at /metrics; key "
        "= an admin key at /metrics; port = only on WHISPER_METRICS_PORT (for a sidecar "
        "in the same instance), not on the service's port.",
    )
    metrics_port: int = Field(
        9464, ge=1, le=65535, description="Port of /metrics when WHISPER_METRICS_ACCESS=port."
    )
    auth_failures_per_minute: float = Field(
        10.0,
        ge=0,
        le=100_000,
        description="Requests with a wrong API key (or wrong push credentials) one address "
        "may send per minute (bursts of as many); past it that address gets 429 whatever "
        "it sends. 0 = no limit.",
    )
    cors_origins: CommaList = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated; also the only other origins "
        "whose pages may open a WebSocket here (a page of the service's own origin always may).",
    )
    rate_limit_per_minute: float = Field(
        0.0, ge=0, le=1_000_000, description="Requests per minute per client; 0 = no limit."
    )
    rate_limit_burst: int = Field(
        10, ge=1, le=100_000, description="Requests a client may send at once."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Addresses or networks of the proxies whose X-Forwarded-For is "
        "believed; the client is the right-most address they did not add. Never *: a "
        "client could then name any address it likes.",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _no_wildcard(cls, value: str) -> str:
        if "*" in value:
            raise ValueError(
                "'*' would believe any X-Forwarded-For a client sends: list the proxies' "
                "addresses or networks (Cloud Run's front end: 169.254.0.0/16)"
            )
        for part in (p.strip() for p in value.split(",")):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"{part!r} is not an address or network") from exc
        return value


class StorageFields(BaseModel):
    """Google Cloud Storage inputs and outputs."""

    gcs_allowed_buckets: CommaList = Field(
        default_factory=list,
        description="Buckets gcs_uri inputs may come from, comma-separated; none = no gs:// input.",
    )
    gcs_output_uri: str | None = Field(
        None,
        pattern=f"^{GCS_PREFIX_PATTERN}$",
        description="gs://bucket/prefix where transcripts are written when a request asks.",
    )
    gcs_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Deadline of one GCS call, retries included."
    )


# A Pub/Sub topic's full name, as Google documents project ids and topic names.
TOPIC_PATTERN = r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}"


class RealtimeFields(BaseModel):
    """Live transcription over WebSocket: /v1/realtime and /stream."""

    realtime_max_sessions: int = Field(
        8,
        ge=0,
        le=1000,
        description="Open live sessions one process holds; past it the handshake is "
        "refused with HTTP 429. 0 turns live transcription off.",
    )
    realtime_max_sessions_per_client: int = Field(
        4,
        ge=1,
        le=1000,
        description="Open live sessions one client (API key, or address without keys) "
        "holds in one process, so that one cannot take every place; past it the "
        "handshake is refused with HTTP 429. A deployment whose one caller runs every "
        "session sets it to WHISPER_REALTIME_MAX_SESSIONS.",
    )
    realtime_max_pending_turns: int = Field(
        4,
        ge=1,
        le=64,
        description="Closed turns of one session waiting to be transcribed; past it a "
        "client's commit is refused with an error event, and a turn server VAD would close "
        "stays open until one is done (one that reaches the turn cap first fails).",
    )
    realtime_max_frame_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=15 * 1024 * 1024,
        description="Largest audio frame a client may send in one message (PCM16 bytes; "
        "base64 in an append event): 1 MiB is 21.8 s at 24 kHz. A larger one is refused "
        "with an error event before it is decoded.",
    )
    realtime_partial_seconds: float = Field(
        1.0,
        ge=0.2,
        le=30,
        description="While a turn is open, its text so far is re-decoded after this much "
        "new audio (a delta event).",
    )
    realtime_final_context: bool = Field(
        True,
        description="Decode a turn's final text after the previous turn's audio, with "
        "that turn's text forced as the decoder's prefix: fewer word errors at the "
        "turn's edges, for about 20 % (int8) to 55 % (float32) more decoding per final. "
        "false decodes each turn alone (docs/benchmarks.md).",
    )
    realtime_max_turn_seconds: float = Field(
        30.0,
        ge=1,
        le=30,
        description="A turn that never pauses is closed (and transcribed) at this length: "
        "Whisper's window.",
    )
    realtime_idle_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="A session that sends nothing for this long is closed (1008).",
    )
    realtime_max_session_seconds: float = Field(
        3600.0,
        gt=0,
        le=3600,
        description="Longest session (Cloud Run ends a WebSocket at 60 minutes).",
    )
    realtime_max_ahead_seconds: float = Field(
        120.0,
        ge=1,
        le=3600,
        description="How far ahead of real time a session's audio may run (a client "
        "replaying a recording fast): past it, each frame is dropped with an error event.",
    )


class JobsFields(BaseModel):
    """Async jobs for long audio."""

    jobs_store: str | None = Field(
        None,
        description="Where job records live: an absolute local directory (one machine) or "
        "firestore (every instance); unset = no /jobs.",
    )
    jobs_files: str | None = Field(
        None,
        description="Where a job's input, units and result live: gs://bucket/prefix, or an "
        "absolute directory every instance shares. Default: the jobs_store directory; "
        "required with firestore.",
    )
    jobs_queue: Literal["local", "pubsub"] = Field(
        "local",
        description="How job work reaches instances: local = an in-process queue (one "
        "process), pubsub = WHISPER_PUBSUB_TOPIC with a push subscription to "
        "/internal/jobs/units (any instance).",
    )
    jobs_concurrency: int = Field(
        1,
        ge=1,
        le=32,
        description="Job deliveries (plans, units) one process works on at once; more wait.",
    )
    jobs_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Deliveries of one plan or unit before it is dead-lettered and the job "
        "fails (Pub/Sub's dead-letter policy takes 5-100).",
    )
    jobs_unit_seconds: float = Field(
        120.0,
        ge=5,
        le=600,
        description="Inference time one unit aims at; units hold this much audio at the "
        "measured real-time factor. Keep it well inside the subscription's ack deadline.",
    )
    jobs_unit_max_audio_seconds: float = Field(
        600.0,
        ge=30,
        le=24 * 3600,
        description="Most audio one unit holds, however fast the instance is.",
    )
    jobs_batch_size: int = Field(
        4,
        ge=1,
        le=64,
        description="Windows decoded together in one pass (faster-whisper's batched "
        "pipeline); unit checkpoints and progress advance per batch. Each window holds "
        "about 90 MiB while the pass runs.",
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
        description="How long finished jobs and their results are kept (expires_at), then deleted.",
    )
    batch_tasks: int = Field(
        10, ge=1, le=10_000, description="Tasks of the rendered Cloud Run Job for `batch`."
    )
    batch_parallelism: int = Field(
        5, ge=1, le=1_000, description="Tasks of the batch job that run at once."
    )
    batch_max_retries: int = Field(
        3, ge=0, le=10, description="Times Cloud Run reruns a failed batch task (it resumes)."
    )
    batch_task_timeout_seconds: int = Field(
        3600, ge=60, le=7 * 86_400, description="Longest one batch task may run."
    )
    pubsub_topic: str | None = Field(
        None,
        description="Topic job deliveries are published to: projects/<p>/topics/<t>.",
    )
    pubsub_dead_letter_topic: str | None = Field(
        None,
        description="Dead-letter topic of the push subscription: projects/<p>/topics/<t>.",
    )
    pubsub_push_audience: str | None = Field(
        None,
        description="Audience base of the push subscriptions' OIDC tokens: a push to a "
        "route must carry this followed by the route's path (the service's URL makes it "
        "Pub/Sub's default, the push endpoint's URL), so each subscription's token works "
        "on its own route only.",
    )
    pubsub_push_service_account: str | None = Field(
        None,
        description="Service account e-mail the push subscription's OIDC token must name.",
    )
    pubsub_push_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description="Where Google's token-signing certificates are fetched (cached an hour).",
    )
    pubsub_push_token: SecretStr | None = Field(
        None,
        description="For the Pub/Sub emulator only, which signs nothing: a shared token "
        f"(at least {MIN_PUSH_TOKEN_LENGTH} characters) a push endpoint's ?token= must "
        "carry instead of OIDC. Refused with OIDC configured or in production.",
    )
    firestore_database: str = Field("(default)", description="Firestore database of job records.")
    firestore_collection: str = Field(
        "whisper-jobs",
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        description="Firestore collection of job records.",
    )

    @field_validator("jobs_store")
    @classmethod
    def _store_location(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value != "firestore" and not Path(value).is_absolute():
            raise ValueError("must be firestore or an absolute directory path")
        return value

    @field_validator("jobs_files")
    @classmethod
    def _files_location(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("gs://"):
            if not re.fullmatch(GCS_PREFIX_PATTERN, value):
                raise ValueError("must be gs://bucket[/prefix] with a valid bucket name")
        elif not Path(value).is_absolute():
            raise ValueError("must be gs://bucket[/prefix] or an absolute directory path")
        return value

    @field_validator("pubsub_push_token")
    @classmethod
    def _push_token_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and len(value.get_secret_value()) < MIN_PUSH_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_PUSH_TOKEN_LENGTH} characters (it can be guessed "
                "otherwise): generate one, e.g. `openssl rand -hex 24`"
            )
        return value

    @field_validator("pubsub_topic", "pubsub_dead_letter_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(TOPIC_PATTERN, value):
            raise ValueError("must be projects/<project>/topics/<topic>")
        return value or None

    @model_validator(mode="after")
    def _jobs_consistent(self) -> Self:
        problems = []
        if self.jobs_store == "firestore" and not self.jobs_files:
            problems.append("WHISPER_JOBS_STORE=firestore needs WHISPER_JOBS_FILES")
        if self.pubsub_push_token and (
            self.pubsub_push_audience or self.pubsub_push_service_account
        ):
            problems.append("WHISPER_PUBSUB_PUSH_TOKEN is for the emulator only: with "
                            "WHISPER_PUBSUB_PUSH_AUDIENCE or WHISPER_PUBSUB_PUSH_SERVICE_ACCOUNT "
                            "set it would replace OIDC; unset it")  # fmt: skip
        if self.jobs_queue == "pubsub":
            if not self.jobs_store:
                problems.append("WHISPER_JOBS_QUEUE=pubsub needs WHISPER_JOBS_STORE")
            if not (self.pubsub_topic and self.pubsub_dead_letter_topic):
                problems.append("WHISPER_JOBS_QUEUE=pubsub needs WHISPER_PUBSUB_TOPIC and "
                                "WHISPER_PUBSUB_DEAD_LETTER_TOPIC")  # fmt: skip
            if not self.pubsub_push_token and not (
                self.pubsub_push_audience and self.pubsub_push_service_account
            ):
                problems.append("WHISPER_JOBS_QUEUE=pubsub needs WHISPER_PUBSUB_PUSH_AUDIENCE and "
                                "WHISPER_PUBSUB_PUSH_SERVICE_ACCOUNT (or, for the emulator, "
                                "WHISPER_PUBSUB_PUSH_TOKEN)")  # fmt: skip
            if self.jobs_max_attempts < 5:
                problems.append("Pub/Sub dead-letters after 5 to 100 deliveries: "
                                "WHISPER_JOBS_MAX_ATTEMPTS must be at least 5")  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LoggingFields(BaseModel):
    """Logs and the Google Cloud project they point traces at."""

    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(uppercase)
    ] = Field("INFO", description="Minimum log severity.")
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


class PlatformFields(BaseModel):
    """The deployment's shape, rendered into the Cloud Run manifests."""

    memory_limit_mib: int = Field(2048, ge=256, le=32768, description="Container memory.")
    cpu_limit: int = Field(2, ge=1, le=8, description="Container CPUs.")
    min_instances: int = Field(1, ge=0, le=100, description="Cloud Run minimum instances.")
    max_instances: int = Field(10, ge=1, le=100, description="Cloud Run maximum instances.")
    container_concurrency: int = Field(
        8, ge=1, le=1000, description="Cloud Run requests per instance."
    )
