"""Logs and the Google Cloud project they point traces at."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field

from whisper_service.config.fields.shared import uppercase


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
