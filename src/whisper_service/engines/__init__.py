"""Inference engines behind one protocol (``base``): ``faster_whisper_engine``
(CTranslate2) and ``openai_whisper_engine`` (torch, with ``torch_optimize``'s int8
path), plus Whisper's language table (``languages``).

The implementations are not imported here: each pulls in its own runtime (torch or
CTranslate2), and a process loads only the one it serves with
(``serving.startup.load_engine``). Engines know nothing of the service's settings:
they take a model artifact and explicit sizes.
"""

from whisper_service.engines.base import (
    FALLBACK_TEMPERATURES,
    Cancelled,
    CancelToken,
    Engine,
    Segment,
    SegmentCallback,
    Task,
    TranscribeOptions,
    Transcription,
    UnsupportedOption,
    VadSettings,
    Word,
    check_options,
    require_multilingual,
)

__all__ = [
    "FALLBACK_TEMPERATURES",
    "CancelToken",
    "Cancelled",
    "Engine",
    "Segment",
    "SegmentCallback",
    "Task",
    "TranscribeOptions",
    "Transcription",
    "UnsupportedOption",
    "VadSettings",
    "Word",
    "check_options",
    "require_multilingual",
]
