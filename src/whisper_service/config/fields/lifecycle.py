"""Start and stop: warm-up, drain, the platform's grace period."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
