"""The HTTP server: port, workers, threads."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field


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
