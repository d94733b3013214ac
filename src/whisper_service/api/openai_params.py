"""The OpenAI transcription parameters a plain form field cannot declare.

The openai SDK sends an object as bracketed form fields
(``chunking_strategy[threshold]=0.6``); curl users send ``chunking_strategy`` as a JSON
object. Both are read here from the parsed form. Every field the request carries is
checked against the ones OpenAI defines (an unknown one is refused, as OpenAI refuses
it), and the ones this service cannot honour are refused with a message saying so,
never dropped.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData

from whisper_service.engines import VadSettings
from whisper_service.errors import InvalidParameter, ServiceError

TRANSCRIPTION_FIELDS = {
    "file", "model", "language", "prompt", "response_format", "temperature",
    "timestamp_granularities", "stream", "include", "chunking_strategy",
    "known_speaker_names", "known_speaker_references", "keywords", "languages",
}  # fmt: skip
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature"}
# OpenAI's realtime server_vad defaults, for the fields a server_vad object leaves out.
SERVER_VAD_DEFAULTS = VadSettings(threshold=0.5, min_silence_ms=500, speech_pad_ms=300)


def _base_name(field: str) -> str:
    """``include[]`` -> ``include``; ``chunking_strategy[type]`` -> ``chunking_strategy``."""
    return field.split("[", 1)[0]


def _values(form: FormData, name: str) -> list[str]:
    values = form.getlist(name) + form.getlist(f"{name}[]")
    return [v for v in values if isinstance(v, str)]


def check_known_fields(form: FormData, known: set[str]) -> None:
    """400, as OpenAI answers it, for a field OpenAI does not define here."""
    for field in form:
        if _base_name(field) not in known:
            raise ServiceError(
                f"Unrecognized request argument supplied: {field}",
                code="unknown_parameter",
                status=400,
                param=field,
            )


def parse_chunking(form: FormData) -> VadSettings | None:
    """``chunking_strategy``: "auto", a server_vad object (JSON), or the SDK's
    bracketed fields; None when absent."""
    param = "chunking_strategy"
    raw: dict[str, Any] = {}
    plain = form.get(param)
    if isinstance(plain, str) and plain.strip():
        text = plain.strip()
        if text == "auto":
            return VadSettings()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(
                f'{param} must be "auto" or a server_vad object, not {text!r}', param=param
            ) from exc
        if not isinstance(parsed, dict):
            raise InvalidParameter(f'{param} must be "auto" or an object', param=param)
        raw = parsed
    for field, value in form.multi_items():
        if field.startswith(f"{param}[") and field.endswith("]") and isinstance(value, str):
            raw[field[len(param) + 1 : -1]] = value
    if not raw:
        return None
    if raw.get("type") != "server_vad":
        raise InvalidParameter(f'{param}[type] must be "server_vad"', param=f"{param}.type")
    unknown = set(raw) - {"type", "threshold", "prefix_padding_ms", "silence_duration_ms"}
    if unknown:
        name = sorted(unknown)[0]
        raise ServiceError(
            f"Unrecognized request argument supplied: {param}[{name}]",
            code="unknown_parameter",
            status=400,
            param=f"{param}.{name}",
        )
    defaults = SERVER_VAD_DEFAULTS
    return VadSettings(
        threshold=_number(raw, "threshold", defaults.threshold, 0.0, 1.0, float),
        min_silence_ms=int(
            _number(raw, "silence_duration_ms", defaults.min_silence_ms, 0, 10_000, int)
        ),
        speech_pad_ms=int(
            _number(raw, "prefix_padding_ms", defaults.speech_pad_ms, 0, 10_000, int)
        ),
    )


def _number(
    raw: dict[str, Any], key: str, default: float, low: float, high: float, kind: type
) -> float:
    if key not in raw:
        return default
    param = f"chunking_strategy.{key}"
    try:
        value = float(raw[key])
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"{param} must be a number", param=param) from exc
    if kind is int and value != int(value):
        raise InvalidParameter(f"{param} must be a whole number", param=param)
    if not low <= value <= high:
        raise InvalidParameter(f"{param} must be between {low:g} and {high:g}", param=param)
    return value


def check_transcription_form(form: FormData) -> VadSettings | None:
    """Every field of a transcription request checked against OpenAI's; the ones
    Whisper cannot honour refused; the chunking it asks for (None: none)."""
    check_known_fields(form, TRANSCRIPTION_FIELDS)
    for field in ("keywords", "languages"):
        if _values(form, field):
            raise ServiceError(
                f"{field} is supported by gpt-transcribe models only, not by Whisper",
                code="unsupported_option",
                status=400,
                param=field,
            )
    return parse_chunking(form)


def known_speaker_fields(form: FormData) -> tuple[list[str], list[str]]:
    """``known_speaker_names[]`` and ``known_speaker_references[]`` as sent."""
    return _values(form, "known_speaker_names"), _values(form, "known_speaker_references")
