"""The health monitor's thresholds."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

from whisper_service.config.fields.shared import env_var_name


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

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        """A degraded threshold comes before its unhealthy one."""
        problems = [
            f"{env_var_name(low)} must not exceed {env_var_name(high)}"
            for low, high in (
                ("health_memory_degraded_percent", "health_memory_unhealthy_percent"),
                ("health_loop_lag_degraded_seconds", "health_loop_lag_unhealthy_seconds"),
                # Free disk: less is worse.
                ("health_disk_free_unhealthy_mib", "health_disk_free_degraded_mib"),
            )
            if getattr(self, low) > getattr(self, high)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
