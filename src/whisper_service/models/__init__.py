"""Model sources: a model spec (embedded name, path, openai-whisper name, gs:// prefix)
resolved to files on disk in the format an engine loads (``sources``), converting
CTranslate2 weights into an openai-whisper checkpoint when needed (``convert``)."""

from whisper_service.models.convert import ConversionError, convert_ct2_to_openai_whisper
from whisper_service.models.sources import (
    EMBEDDED_MODELS,
    ModelArtifact,
    ModelFormat,
    ModelNotFound,
    embedded_available,
    openai_whisper_names,
    resolve_model,
)

__all__ = [
    "EMBEDDED_MODELS",
    "ConversionError",
    "ModelArtifact",
    "ModelFormat",
    "ModelNotFound",
    "convert_ct2_to_openai_whisper",
    "embedded_available",
    "openai_whisper_names",
    "resolve_model",
]
