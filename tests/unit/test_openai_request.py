"""The /v1 request models' own invariants (their HTTP behaviour is in
tests/http/test_openai_params.py)."""

from __future__ import annotations

from typing import get_args

from whisper_service.api.openai.request import TranscriptionFormat
from whisper_service.formats import ResponseFormat


def test_a_transcription_offers_every_response_format_and_diarized_json() -> None:
    # One Literal, kept by hand beside the enum: a format added to one is in both.
    assert set(get_args(TranscriptionFormat)) == {f.value for f in ResponseFormat} | {
        "diarized_json"
    }
