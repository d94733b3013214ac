"""Async jobs: the store, the files, the queue, Pub/Sub."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from whisper_service.config.fields.shared import GCS_PREFIX_PATTERN

# The emulator's shared push token: shorter could be guessed (`openssl rand -hex 24`).
MIN_PUSH_TOKEN_LENGTH = 32
# A Pub/Sub topic's full name, as Google documents project ids and topic names.
TOPIC_PATTERN = r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}"


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
