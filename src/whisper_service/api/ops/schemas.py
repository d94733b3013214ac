"""What the health probes answer, as pydantic models (the OpenAPI document shows
them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from whisper_service.api.schemas import omitted_when_none


class Live(BaseModel):
    """The process answers."""

    status: Literal["alive"] = "alive"


class Startup(BaseModel):
    """Whether the model has loaded (503 while ``loading``)."""

    status: Literal["started", "loading"]
    load_seconds: float | None = omitted_when_none()


class QueueState(BaseModel):
    """Inference workers and the queue in front of them: up to ``workers`` x
    ``batch_size`` requests run at once (``WHISPER_BATCH_MAX_SIZE``); ``decoding``:
    admitted requests still decoding their audio, counted against the capacity."""

    workers: int
    batch_size: int
    running: int
    waiting: int
    decoding: int
    capacity: int


ReadyStatus = Literal["ready", "loading", "draining", "overloaded"]


class Readiness(BaseModel):
    """Whether this instance should get traffic (503 unless ``ready``)."""

    status: ReadyStatus
    model_loaded: bool
    queue: QueueState


class ModelReadiness(BaseModel):
    """KServe v2 model readiness."""

    name: str
    ready: bool
    status: str


class Threshold(BaseModel):
    """Where a check turns degraded and unhealthy (None: never)."""

    degraded: float | None
    unhealthy: float | None


class Trend(BaseModel):
    """A figure over the health window."""

    mean: float
    p95: float
    max: float
    samples: int


class HealthCheckOut(BaseModel):
    """One check's verdict on its latest figure, with its trend over the window."""

    status: Literal["healthy", "degraded", "unhealthy"]
    value: float | None
    unit: str
    threshold: Threshold
    message: str
    trend: Trend | None = Field(None, description="Over the window, for sampled figures")


class InFlightOut(BaseModel):
    """A request being served."""

    request_id: str
    method: str
    path: str
    started_at: float
    age_seconds: float


class HealthReport(BaseModel):
    """GET /health: every check and the process's state (503 when unhealthy)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    sampled_at: float | None
    window_seconds: float
    checks: dict[str, HealthCheckOut]
    version: str
    pid: int | None = omitted_when_none("With an admin key")
    engine: str
    model: str
    model_loaded: bool
    uptime_seconds: float
    started_at: float
    draining: bool
    in_flight_count: int
    in_flight: list[InFlightOut] | None = omitted_when_none("Ids and paths: with an admin key")
    queue: QueueState
    jobs: dict[str, Any] | None = Field(
        description="What this instance holds (its store and name with an admin key); "
        "null without /jobs"
    )
