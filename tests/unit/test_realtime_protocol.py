"""Live sessions' client events, checked whole before anything acts on them: every
bad field is a ProtocolError naming it, for an error event (issue 23)."""

from __future__ import annotations

import json

import pytest

from whisper_service.realtime.protocol import (
    ProtocolError,
    SessionUpdate,
    Start,
    parse,
    parse_native,
)
from whisper_service.realtime.session import SessionConfig
from whisper_service.realtime.vad import TurnDetection


def update(**session: object) -> str:
    return json.dumps({"type": "session.update", "session": {"type": "transcription", **session}})


def audio_input(**fields: object) -> str:
    return update(audio={"input": fields})


def applied(text: str) -> SessionConfig:
    """The session after ``text``, parsed and applied, as a session would."""
    event = parse(text)
    assert isinstance(event, SessionUpdate)
    return event.session.applied_to(SessionConfig())


def started(text: str) -> SessionConfig:
    """The session a start message asks for."""
    event = parse_native(text)
    assert isinstance(event, Start)
    return event.config()


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        # The first two ended the session with no close frame before (issue 23).
        ('{"type":"session.update","session":{"audio":"x"}}', "invalid_value", "session.audio"),
        ('{"type":[]}', "invalid_event", "type"),
        (audio_input(transcription={"language": "klingon"}), "invalid_language",
         "session.audio.input.transcription.language"),
        (audio_input(transcription={"prompt": "p" * 2001}), "invalid_value",
         "session.audio.input.transcription.prompt"),
        (audio_input(format={"type": "audio/pcm", "rate": 44_100}), "invalid_sample_rate",
         "session.audio.input.format.rate"),
        (audio_input(format={"type": "audio/pcmu"}), "unsupported_audio_format",
         "session.audio.input.format.type"),
        (audio_input(turn_detection={"type": "server_vad", "threshold": 2}),
         "invalid_turn_detection", "session.audio.input.turn_detection.threshold"),
        (audio_input(turn_detection={"type": "semantic_vad"}), "unsupported_turn_detection",
         "session.audio.input.turn_detection"),
        (audio_input(turn_detection=None, speed=2), "unknown_parameter",
         "session.audio.input.speed"),
        (update(type="realtime"), "unsupported_session", "session.type"),
        ('{"type":"input_audio_buffer.append"}', "missing_required_parameter", "audio"),
        ('{"type":"input_audio_buffer.append","audio":5}', "invalid_value", "audio"),
        ('{"type":"input_audio_buffer.commit","force":true}', "unknown_parameter", "force"),
        ('{"type":"response.create"}', "unknown_event", "type"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", None),
    ],
)  # fmt: skip
def test_a_bad_openai_event_names_its_field(text: str, code: str, param: str | None) -> None:
    with pytest.raises(ProtocolError) as refused:
        applied(text)
    assert (refused.value.code, refused.value.param) == (code, param)


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ('{"type":"start","sample_rate":1e999}', "invalid_value", "sample_rate"),
        ('{"type":"start","sample_rate":8000}', "invalid_sample_rate", "sample_rate"),
        ('{"type":"start","language":"xx"}', "invalid_language", "language"),
        ('{"type":"start","prompt":"' + "p" * 2001 + '"}', "invalid_value", "prompt"),
        ('{"type":"start","turn_detection":{"threshold":"a"}}', "invalid_turn_detection",
         "turn_detection.threshold"),
        ('{"type":"start","rate":16000}', "unknown_parameter", "rate"),
        ('{"type":"go"}', "unknown_event", "type"),
    ],
)  # fmt: skip
def test_a_bad_start_message_names_its_field(text: str, code: str, param: str | None) -> None:
    with pytest.raises(ProtocolError) as refused:
        started(text)
    assert (refused.value.code, refused.value.param) == (code, param)


def test_what_the_sdk_sends_is_read() -> None:
    ga = parse(audio_input(
        format={"type": "audio/pcm", "rate": 24_000},
        transcription={"model": "whisper-1", "language": "English", "prompt": "names"},
        turn_detection={"type": "server_vad", "silence_duration_ms": 700,
                        "create_response": True},
        noise_reduction={"type": "near_field"},
    ))  # fmt: skip
    assert isinstance(ga, SessionUpdate)
    config = ga.session.applied_to(SessionConfig())
    assert config == SessionConfig(24_000, "en", "names", TurnDetection(silence_duration_ms=700))
    beta = parse(json.dumps({"type": "transcription_session.update", "session": {
        "input_audio_format": "pcm16", "input_audio_transcription": {"language": "de"},
        "turn_detection": None}}))  # fmt: skip
    assert isinstance(beta, SessionUpdate)
    assert beta.session.applied_to(config) == SessionConfig(24_000, "de", "names", None)
    # Fields left out keep their value.
    partial = parse(audio_input(transcription={"prompt": "other"}))
    assert isinstance(partial, SessionUpdate)
    assert partial.session.applied_to(config).language == "en"
    start = parse_native('{"type":"start","sample_rate":24000,"turn_detection":null}')
    assert isinstance(start, Start)
    assert start.config() == SessionConfig(24_000, None, None, None)
