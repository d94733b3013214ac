"""The deployment's shape, rendered into the Cloud Run manifests."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PlatformFields(BaseModel):
    """The deployment's shape, rendered into the Cloud Run manifests."""

    memory_limit_mib: int = Field(2048, ge=256, le=32768, description="Container memory.")
    cpu_limit: int = Field(2, ge=1, le=8, description="Container CPUs.")
    min_instances: int = Field(1, ge=0, le=100, description="Cloud Run minimum instances.")
    max_instances: int = Field(10, ge=1, le=100, description="Cloud Run maximum instances.")
    container_concurrency: int = Field(
        8, ge=1, le=1000, description="Cloud Run requests per instance."
    )
