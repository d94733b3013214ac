"""Google Cloud Storage inputs and outputs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from whisper_service.config.fields.shared import GCS_PREFIX_PATTERN, CommaList


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
