"""OpenAI's realtime transcription protocol, the client's side: the events it sends,
parsed and checked (``ClientEvent``), and the session it configures.

The current SDK (openai 3.x, the GA API) sends ``session.update`` with
``session: {type: "transcription", audio: {input: {format, transcription,
turn_detection}}}``; the beta shape (``transcription_session.update`` with
``input_audio_format: "pcm16"``, ``input_audio_transcription``, ``turn_detection``) is
read too. Anything else is a ``ProtocolError``, answered with an ``error`` event.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from whisper_service.realtime.audio import FrameError, check_rate, from_base64
from whisper_service.realtime.session import SessionConfig
from whisper_service.realtime.vad import TurnDetection

# What a client may send here; response.* and conversation.* belong to speech-to-speech.
CLIENT_EVENTS = {
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
}
# The audio formats: OpenAI's PCM is 24 kHz; 16 kHz is this service's addition.
FORMAT_RATES = {"pcm16": 24_000, "audio/pcm": 24_000}


class ProtocolError(ValueError):
    """A client event that cannot be honoured; ``code`` and ``param`` for the client."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def parse(text: str) -> dict[str, Any]:
    """A client event: JSON, an object, a known ``type``."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"the event is not valid JSON: {exc.msg}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolError("invalid_event", "an event is a JSON object with a string type")
    if event["type"] not in CLIENT_EVENTS:
        raise ProtocolError(
            "unknown_event",
            f"unknown or unsupported event type {event['type']!r} for a transcription "
            f"session; supported: {', '.join(sorted(CLIENT_EVENTS))}",
            "type",
        )
    return event


NATIVE_EVENTS = {"start", "commit", "clear", "stop"}


def parse_native(text: str) -> dict[str, Any]:
    """A ``/stream`` control message: JSON with a known ``type``."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"the message is not valid JSON: {exc.msg}") from exc
    if not isinstance(event, dict) or event.get("type") not in NATIVE_EVENTS:
        raise ProtocolError(
            "unknown_event",
            f"a control message is JSON with type one of {', '.join(sorted(NATIVE_EVENTS))}",
            "type",
        )
    return event


def native_config(event: dict[str, Any]) -> SessionConfig:
    """The session a ``/stream`` start message asks for: ``sample_rate`` (16000,
    24000), ``language``, ``prompt``, ``turn_detection`` (server_vad's fields, or null
    for commits by hand)."""
    try:
        rate = check_rate(int(event.get("sample_rate", 16_000)))
    except (FrameError, TypeError, ValueError) as exc:
        raise ProtocolError(
            "invalid_sample_rate", "sample_rate is 16000 or 24000 (16-bit PCM)", "sample_rate"
        ) from exc
    raw = event.get("turn_detection", {"type": "server_vad"})
    if isinstance(raw, dict):
        raw = {"type": "server_vad", **raw}
    language, prompt = event.get("language"), event.get("prompt")
    return SessionConfig(
        rate=rate,
        language=language if isinstance(language, str) and language else None,
        prompt=prompt if isinstance(prompt, str) and prompt else None,
        turn_detection=_turn_detection(raw),
    )


def appended_audio(event: dict[str, Any]) -> bytes:
    """The bytes of an ``input_audio_buffer.append``."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ProtocolError("missing_audio", "input_audio_buffer.append needs audio (base64)")
    try:
        return from_base64(audio)
    except FrameError as exc:
        raise ProtocolError(exc.code, exc.message, "audio") from exc


def updated_config(current: SessionConfig, event: dict[str, Any]) -> SessionConfig:
    """The session after a ``session.update`` (GA or beta shape); fields left out
    keep their value."""
    session = event.get("session")
    if not isinstance(session, dict):
        raise ProtocolError("invalid_session", "session.update needs a session object")
    if session.get("type", "transcription") != "transcription":
        raise ProtocolError(
            "unsupported_session",
            "this service runs transcription sessions only (session.type=transcription)",
            "session.type",
        )
    audio_input = (session.get("audio") or {}).get("input") or {}
    config = current
    fmt = audio_input.get("format", session.get("input_audio_format"))
    if fmt is not None:
        config = replace(config, rate=_rate(fmt))
    transcription = audio_input.get("transcription", session.get("input_audio_transcription"))
    if isinstance(transcription, dict):
        language = transcription.get("language", config.language)
        prompt = transcription.get("prompt", config.prompt)
        config = replace(config, language=language or None, prompt=prompt or None)
    detection_key = "turn_detection"
    if detection_key in audio_input or detection_key in session:
        raw = audio_input.get(detection_key, session.get(detection_key))
        config = replace(config, turn_detection=_turn_detection(raw))
    return config


def _rate(fmt: Any) -> int:
    if isinstance(fmt, str) and fmt in FORMAT_RATES:
        return FORMAT_RATES[fmt]
    if isinstance(fmt, dict) and fmt.get("type") in ("audio/pcm", None):
        try:
            return check_rate(int(fmt.get("rate", 24_000)))
        except (FrameError, TypeError, ValueError) as exc:
            raise ProtocolError(
                "invalid_sample_rate",
                "audio/pcm is 16-bit PCM at 24000 Hz (or 16000 Hz here)",
                "session.audio.input.format.rate",
            ) from exc
    raise ProtocolError(
        "unsupported_audio_format",
        f"input audio format {fmt!r} is not supported: use audio/pcm (16-bit, 24 or 16 kHz)",
        "session.audio.input.format",
    )


def _turn_detection(raw: Any) -> TurnDetection | None:
    if raw is None:
        return None  # the client commits
    if not isinstance(raw, dict) or raw.get("type") != "server_vad":
        raise ProtocolError(
            "unsupported_turn_detection",
            "turn_detection is server_vad or null here (semantic_vad needs a turn model)",
            "session.audio.input.turn_detection",
        )
    defaults = TurnDetection()
    try:
        detection = TurnDetection(
            threshold=float(raw.get("threshold", defaults.threshold)),
            prefix_padding_ms=int(raw.get("prefix_padding_ms", defaults.prefix_padding_ms)),
            silence_duration_ms=int(raw.get("silence_duration_ms", defaults.silence_duration_ms)),
        )
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            "invalid_turn_detection", "turn_detection's values must be numbers"
        ) from exc
    if not 0 < detection.threshold < 1 or not (
        0 <= detection.prefix_padding_ms <= 5000 and 0 < detection.silence_duration_ms <= 10000
    ):
        raise ProtocolError(
            "invalid_turn_detection",
            "threshold is between 0 and 1, prefix_padding_ms 0 to 5000, "
            "silence_duration_ms 1 to 10000",
            "session.audio.input.turn_detection",
        )
    return detection


def session_object(session_id: str, config: SessionConfig) -> dict[str, Any]:
    """The session as ``session.created``/``session.updated`` show it (GA shape)."""
    detection = config.turn_detection
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": config.rate},
                "transcription": {"model": "whisper-1", "language": config.language,
                                  "prompt": config.prompt},
                "turn_detection": None if detection is None else {
                    "type": "server_vad", "threshold": detection.threshold,
                    "prefix_padding_ms": detection.prefix_padding_ms,
                    "silence_duration_ms": detection.silence_duration_ms,
                },
            }
        },
    }  # fmt: skip
