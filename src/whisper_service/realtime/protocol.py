"""What a live session's client may send, as pydantic models: OpenAI's realtime
transcription events (``/v1/realtime``) and the native ``/stream`` control messages.

The current SDK (openai 3.x, the GA API) sends ``session.update`` with
``session: {type: "transcription", audio: {input: {format, transcription,
turn_detection}}}``; the beta shape (``transcription_session.update`` with
``input_audio_format: "pcm16"``, ``input_audio_transcription``, ``turn_detection``) is
read too. Every event is checked whole before anything acts on it: a field of the
wrong type, out of range or unknown is a ``ProtocolError`` naming it (``param``, a
dotted path as OpenAI writes it), answered with an ``error`` event while the session
goes on. Fields OpenAI defines that do not apply here (noise reduction, logprobs,
``create_response``) are accepted and ignored; fields nobody defines are refused, as
OpenAI refuses them.

The language is checked as HTTP checks it (a Whisper language code or English name),
the prompt bounded as HTTP bounds it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from whisper_service.engines.base import MAX_PROMPT_CHARS
from whisper_service.engines.languages import normalize_language
from whisper_service.realtime.audio import FrameError, from_base64
from whisper_service.realtime.session import SessionConfig
from whisper_service.realtime.vad import TurnDetection

# The audio formats: OpenAI's PCM is 24 kHz; 16 kHz is this service's addition.
FORMAT_RATES = {"pcm16": 24_000, "audio/pcm": 24_000}
RATES = (24_000, 16_000)
# Event types a client may send here; response.* and conversation.* belong to
# speech-to-speech.
CLIENT_EVENTS = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)
NATIVE_EVENTS = ("start", "commit", "clear", "stop")
E = TypeVar("E")


class ProtocolError(ValueError):
    """A client event that cannot be honoured; ``code`` and ``param`` for the client."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _language(value: str | None) -> str | None:
    try:
        return normalize_language(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_language", str(exc)) from exc


def _rate(value: int) -> int:
    if value not in RATES:
        raise PydanticCustomError(
            "invalid_sample_rate",
            "audio is 16-bit PCM at 24000 Hz (or 16000 Hz here), not {rate}",
            {"rate": value},
        )
    return value


Language = Annotated[str | None, Field(None)]
Prompt = Annotated[str | None, Field(None, max_length=MAX_PROMPT_CHARS)]


class _Event(BaseModel):
    """Unknown fields are refused, as OpenAI refuses them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Vad(_Event):
    """server_vad's settings (OpenAI's defaults and bounds)."""

    threshold: float = Field(0.5, gt=0, lt=1)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, gt=0, le=10_000)


class ServerVad(_Vad):
    """OpenAI's ``server_vad`` turn detection (``create_response`` and the like belong
    to speech-to-speech sessions and change nothing here)."""

    type: Literal["server_vad"]
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None


class NativeVad(_Vad):
    """``/stream``'s ``turn_detection``: server_vad's fields (its type may be left out)."""

    type: Literal["server_vad"] = "server_vad"


# Checked apart from the event (``_detection``), so that an unsupported type and a bad
# server_vad value each get their own code.
RawDetection = dict[str, Any] | None


class Transcription(_Event):
    """``audio.input.transcription`` (GA) or ``input_audio_transcription`` (beta)."""

    model: str | None = None
    language: Language
    prompt: Prompt
    delay: str | None = None
    keywords: list[str] | None = None
    languages: list[str] | None = None

    _language = field_validator("language")(_language)


class PcmFormat(_Event):
    """``audio.input.format``: ``audio/pcm`` at 24 kHz (16 kHz here too)."""

    type: str = "audio/pcm"
    rate: int = 24_000

    @field_validator("type")
    @classmethod
    def _pcm(cls, value: str) -> str:
        if value != "audio/pcm":
            raise PydanticCustomError(
                "unsupported_audio_format",
                "input audio format '{format}' is not supported: use audio/pcm "
                "(16-bit, 24 or 16 kHz)",
                {"format": value},
            )
        return value

    _rate = field_validator("rate")(_rate)


class AudioInput(_Event):
    """``session.audio.input``."""

    format: PcmFormat | None = None
    transcription: Transcription | None = None
    turn_detection: RawDetection = None
    noise_reduction: dict[str, Any] | None = None


class Audio(_Event):
    """``session.audio``: only the input belongs to a transcription session."""

    input: AudioInput | None = None


class TranscriptionSession(_Event):
    """The ``session`` of a ``session.update``: the GA shape and the beta one."""

    type: str = "transcription"
    audio: Audio | None = None
    include: list[str] | None = None
    # The beta shape (``transcription_session.update``).
    input_audio_format: str | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: RawDetection = None
    input_audio_noise_reduction: dict[str, Any] | None = None
    modalities: list[str] | None = None
    client_secret: dict[str, Any] | None = None

    @field_validator("type")
    @classmethod
    def _transcription(cls, value: str) -> str:
        if value != "transcription":
            raise PydanticCustomError(
                "unsupported_session",
                "this service runs transcription sessions only (session.type=transcription)",
            )
        return value

    @field_validator("input_audio_format")
    @classmethod
    def _beta_format(cls, value: str | None) -> str | None:
        if value is not None and value not in FORMAT_RATES:
            raise PydanticCustomError(
                "unsupported_audio_format",
                "input audio format '{format}' is not supported: use pcm16 (16-bit, 24 kHz)",
                {"format": value},
            )
        return value

    def applied_to(self, current: SessionConfig) -> SessionConfig:
        """``current`` with what this update sets (fields left out keep their value)."""
        config = current
        audio_input = self.audio.input if self.audio and self.audio.input else AudioInput()
        if audio_input.format is not None:
            config = replace(config, rate=audio_input.format.rate)
        elif self.input_audio_format is not None:
            config = replace(config, rate=FORMAT_RATES[self.input_audio_format])
        transcription = audio_input.transcription or self.input_audio_transcription
        if transcription is not None:
            given = transcription.model_fields_set
            language = transcription.language if "language" in given else config.language
            prompt = transcription.prompt if "prompt" in given else config.prompt
            config = replace(config, language=language or None, prompt=prompt or None)
        if "turn_detection" in audio_input.model_fields_set:
            detection = _detection(
                audio_input.turn_detection, ServerVad, "session.audio.input.turn_detection"
            )
            config = replace(config, turn_detection=detection)
        elif "turn_detection" in self.model_fields_set:
            detection = _detection(self.turn_detection, ServerVad, "session.turn_detection")
            config = replace(config, turn_detection=detection)
        return config


class SessionUpdate(_Event):
    """``session.update`` (GA) or ``transcription_session.update`` (beta)."""

    type: Literal["session.update", "transcription_session.update"]
    event_id: str | None = None
    session: TranscriptionSession


class Append(_Event):
    """``input_audio_buffer.append``: base64 PCM16 at the session's rate."""

    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str

    def pcm(self) -> bytes:
        """The frame's bytes."""
        try:
            return from_base64(self.audio)
        except FrameError as exc:
            raise ProtocolError(exc.code, exc.message, "audio") from exc


class BufferCommand(_Event):
    """``input_audio_buffer.commit`` or ``.clear``."""

    type: Literal["input_audio_buffer.commit", "input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = Annotated[SessionUpdate | Append | BufferCommand, Field(discriminator="type")]


class Start(_Event):
    """``/stream``'s first message: ``sample_rate`` (16000, 24000), ``language``,
    ``prompt``, ``turn_detection`` (server_vad's fields, or null for commits by hand)."""

    type: Literal["start"]
    sample_rate: int = 16_000
    language: Language
    prompt: Prompt
    turn_detection: RawDetection = Field(default_factory=lambda: {"type": "server_vad"})

    _rate = field_validator("sample_rate")(_rate)
    _language = field_validator("language")(_language)

    def config(self) -> SessionConfig:
        """The session this start message asks for."""
        raw = self.turn_detection
        return SessionConfig(
            rate=self.sample_rate,
            language=self.language,
            prompt=self.prompt or None,
            turn_detection=_detection(
                None if raw is None else {"type": "server_vad", **raw}, NativeVad, "turn_detection"
            ),
        )


class NativeCommand(_Event):
    """``/stream``'s ``commit``, ``clear`` or ``stop``."""

    type: Literal["commit", "clear", "stop"]


NativeEvent = Annotated[Start | NativeCommand, Field(discriminator="type")]

_CLIENT_EVENT: TypeAdapter[SessionUpdate | Append | BufferCommand] = TypeAdapter(ClientEvent)
_NATIVE_EVENT: TypeAdapter[Start | NativeCommand] = TypeAdapter(NativeEvent)


def parse(text: str) -> SessionUpdate | Append | BufferCommand:
    """A ``/v1/realtime`` client event, checked whole."""
    return _validated(_CLIENT_EVENT, text, CLIENT_EVENTS)


def parse_native(text: str) -> Start | NativeCommand:
    """A ``/stream`` control message, checked whole."""
    return _validated(_NATIVE_EVENT, text, NATIVE_EVENTS)


def _validated(adapter: TypeAdapter[E], text: str, types: tuple[str, ...]) -> E:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"the event is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:  # nested past the parser's depth
        raise ProtocolError("invalid_json", "the event is nested too deeply") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("invalid_event", "an event is a JSON object with a string type", "type")
    if raw["type"] not in types:
        raise ProtocolError(
            "unknown_event",
            f"unknown or unsupported event type {raw['type']!r}; supported: {', '.join(types)}",
            "type",
        )
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        # The discriminator's own level (the event's type) is not a field.
        raise _protocol_error(exc, drop=raw["type"]) from None


# This module's own error types are the codes the client sees; pydantic's, as OpenAI
# names them.
_OWN_CODES = ("invalid_language", "invalid_sample_rate", "unsupported_audio_format",
              "unsupported_session")  # fmt: skip
_CODES = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}


def _protocol_error(
    exc: ValidationError, drop: str | None = None, prefix: str | None = None, code: str = ""
) -> ProtocolError:
    """The first problem of an event, with the field at fault as a dotted path."""
    error = exc.errors(include_url=False)[0]
    path = [prefix] if prefix else []
    path += [str(part) for part in error["loc"] if part != drop]
    param = ".".join(path) or None
    kind = error["type"]
    code = kind if kind in _OWN_CODES else code or _CODES.get(kind, "invalid_value")
    message = "unknown parameter" if kind == "extra_forbidden" else error["msg"]
    return ProtocolError(code, f"{param}: {message}" if param else message, param)


def _detection(raw: RawDetection, model: type[_Vad], param: str) -> TurnDetection | None:
    """The VAD settings of a ``turn_detection`` field at ``param`` (None: the client
    commits)."""
    if raw is None:
        return None
    if raw.get("type") != "server_vad":
        raise ProtocolError(
            "unsupported_turn_detection",
            "turn_detection is server_vad or null here (semantic_vad needs a turn model)",
            param,
        )
    try:
        vad = model.model_validate(raw)
    except ValidationError as exc:
        raise _protocol_error(exc, prefix=param, code="invalid_turn_detection") from None
    return TurnDetection(vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms)


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
