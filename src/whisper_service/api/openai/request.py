"""Where a ``/v1/audio`` request is parsed and checked: each endpoint's whole form as
one pydantic model, taken with ``Annotated[TranscriptionRequest, Form()]``.

The fields are OpenAI's, in the order of its API reference. A field OpenAI does not
define is refused by the model itself (``extra="forbid"``: 400 ``unknown_parameter``,
as OpenAI answers it); one Whisper cannot honour is refused with a message saying so,
never dropped; options that cannot go together are refused by the model's validators,
before any audio is read. Lists arrive as the openai SDK sends them
(``include[]=logprobs``) or plain (``include=logprobs``). ``chunking_strategy`` is
``"auto"``, a ``server_vad`` object as JSON (curl), or the SDK's bracketed fields
(``chunking_strategy[threshold]=0.6``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import UploadFile
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from whisper_service.api.params import check_known_speakers, parse_language
from whisper_service.config import Settings
from whisper_service.engines import TranscribeOptions, UnsupportedOption, VadSettings
from whisper_service.engines.base import MAX_PROMPT_CHARS
from whisper_service.errors import InvalidParameter
from whisper_service.formats import ResponseFormat
from whisper_service.serving.runtime import OPENAI_MODEL_ALIAS

Granularity = Literal["word", "segment"]
# ResponseFormat's values and OpenAI's diarized_json, as one Literal: a union with the
# enum would name its members in every validation error (a test keeps the two equal).
TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "tsv", "diarized_json"]
STREAMABLE = (ResponseFormat.JSON, ResponseFormat.TEXT)
CHUNKING = "chunking_strategy"


def _list_field(name: str, description: str) -> Any:
    """A list field read as ``name[]`` (the SDK) or ``name`` (curl), repeated."""
    return Field(
        default_factory=list,
        validation_alias=AliasChoices(f"{name}[]", name),
        description=description,
    )


class ServerVad(BaseModel):
    """``chunking_strategy`` as a ``server_vad`` object: cut the audio at the pauses a
    voice activity detector finds. Fields left out take OpenAI's defaults."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    prefix_padding_ms: int = Field(300, ge=0, le=10_000, description="Audio kept before speech")
    silence_duration_ms: int = Field(500, ge=0, le=10_000, description="Silence that ends a chunk")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Speech probability")

    def vad(self) -> VadSettings:
        """These fields as the engine's VAD settings."""
        return VadSettings(
            threshold=self.threshold,
            min_silence_ms=self.silence_duration_ms,
            speech_pad_ms=self.prefix_padding_ms,
        )


def _folded_chunking(data: dict[str, Any]) -> dict[str, Any]:
    """``chunking_strategy`` as one value: the SDK's bracketed fields gathered into an
    object, a JSON object parsed; other fields as sent."""
    folded: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith(f"{CHUNKING}[") and key.endswith("]"):
            parts[key[len(CHUNKING) + 1 : -1]] = value
        else:
            folded[key] = value
    plain = folded.pop(CHUNKING, None)
    if isinstance(plain, str) and plain.strip():
        text = plain.strip()
        if text == "auto":
            if parts:
                raise InvalidParameter(
                    f'{CHUNKING} is "auto" or a server_vad object, not both', param=CHUNKING
                )
            folded[CHUNKING] = text
            return folded
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(
                f'{CHUNKING} must be "auto" or a server_vad object, not {text!r}', param=CHUNKING
            ) from exc
        if not isinstance(parsed, dict):
            raise InvalidParameter(f'{CHUNKING} must be "auto" or an object', param=CHUNKING)
        parts = parsed | parts
    if parts:
        folded[CHUNKING] = parts
    return folded


class AudioRequest(BaseModel):
    """The fields a transcription and a translation share."""

    model_config = ConfigDict(extra="forbid")

    file: UploadFile = Field(description="The audio: any format FFmpeg decodes")
    model: str = Field(
        OPENAI_MODEL_ALIAS, description="whisper-1, or the served model's name (GET /v1/models)"
    )


class TranscriptionRequest(AudioRequest):
    """``POST /v1/audio/transcriptions``: transcribe in the source language; with
    ``response_format=diarized_json``, who said what."""

    chunking_strategy: Literal["auto"] | ServerVad | None = Field(
        None,
        description='"auto" (the service\'s VAD settings), or a server_vad object: as JSON, '
        "or as the SDK's chunking_strategy[type|threshold|prefix_padding_ms|"
        "silence_duration_ms] fields. Without it the audio is not cut at pauses",
    )
    include: list[Literal["logprobs"]] = _list_field(
        "include", "logprobs: per-word log probabilities (response_format=json)"
    )
    known_speaker_names: list[str] = _list_field(
        "known_speaker_names", "Up to 4 names for the speakers of diarized_json"
    )
    known_speaker_references: list[str] = _list_field(
        "known_speaker_references",
        "One audio data URL (2 to 10 s of the speaker) per known_speaker_names[] entry",
    )
    keywords: list[str] = _list_field("keywords", "gpt-transcribe models only: refused")
    language: str | None = Field(
        None, description="ISO 639-1 code or English name; detected when absent"
    )
    languages: list[str] = _list_field("languages", "gpt-transcribe models only: refused")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    response_format: TranscriptionFormat = "json"
    stream: bool = Field(
        False, description="Answer with server-sent events as segments are decoded"
    )
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = _list_field(
        "timestamp_granularities", "word and/or segment timestamps (response_format=verbose_json)"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_chunking_value(cls, data: Any) -> Any:
        return _folded_chunking(data) if isinstance(data, dict) else data

    @field_validator("chunking_strategy", mode="wrap")
    @classmethod
    def _server_vad(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # An object is a server_vad one (the before-validator turned every other string
        # into an object or an error), validated as such: its errors name its own
        # fields (chunking_strategy.threshold), not the union's other member.
        if isinstance(value, dict):
            return ServerVad.model_validate(value)
        return handler(value)

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str | None) -> str | None:
        return parse_language(value)

    @property
    def diarized(self) -> bool:
        """Whether the answer names its speakers (``diarized_json``)."""
        return self.response_format == "diarized_json"

    def format(self) -> ResponseFormat:
        """The answer's format (a diarized answer is json with speakers)."""
        return ResponseFormat.JSON if self.diarized else ResponseFormat(self.response_format)

    @property
    def logprobs(self) -> bool:
        """Whether per-word log probabilities were asked for."""
        return bool(self.include)

    @property
    def words(self) -> bool:
        """Whether word timestamps were asked for."""
        return "word" in self.timestamp_granularities

    def vad(self) -> VadSettings | None:
        """The chunking asked for (None: the audio is not cut)."""
        if self.chunking_strategy is None:
            return None
        if isinstance(self.chunking_strategy, ServerVad):
            return self.chunking_strategy.vad()
        return VadSettings()

    def options(self, settings: Settings) -> TranscribeOptions:
        """The engine options this request asks for (the server's beam size: OpenAI's
        API has no such field)."""
        vad = self.vad()
        return TranscribeOptions(
            language=self.language,
            task="transcribe",
            beam_size=settings.default_beam_size,
            temperature=self.temperature,
            prompt=self.prompt or None,
            # Whisper's word alignment is where the probabilities come from.
            word_timestamps=self.words or self.logprobs,
            vad_filter=vad is not None,
            vad=vad or VadSettings(),
        )

    @model_validator(mode="after")
    def _honourable(self) -> TranscriptionRequest:
        """What Whisper cannot do is refused, not dropped."""
        for name in ("keywords", "languages"):
            if getattr(self, name):
                raise UnsupportedOption(
                    f"{name} is supported by gpt-transcribe models only, not by Whisper", name
                )
        return self

    @model_validator(mode="after")
    def _combinable(self) -> TranscriptionRequest:
        """Options that cannot go together, refused as OpenAI refuses them."""
        fmt = self.format()
        if self.timestamp_granularities and fmt is not ResponseFormat.VERBOSE_JSON:
            raise InvalidParameter(
                "timestamp_granularities requires response_format=verbose_json",
                param="timestamp_granularities",
            )
        if self.logprobs and fmt is not ResponseFormat.JSON:
            raise InvalidParameter(
                "include[]=logprobs requires response_format=json", param="include"
            )
        if self.stream and fmt not in STREAMABLE:
            raise InvalidParameter(
                "stream=true answers server-sent events of text: response_format must be "
                f"json or text, not {fmt.value}",
                param="stream",
            )
        return self

    @model_validator(mode="after")
    def _speakers(self) -> TranscriptionRequest:
        """OpenAI's rules for its diarizing model: no prompt, no logprobs; known
        speakers only with diarized_json, paired and distinct."""
        known = self.known_speaker_names or self.known_speaker_references
        if not self.diarized:
            if known:
                raise InvalidParameter(
                    "known_speaker_names[] and known_speaker_references[] label the speakers "
                    "of response_format=diarized_json",
                    param="known_speaker_names",
                )
            return self
        if self.prompt:
            raise InvalidParameter(
                "prompt is not supported with diarization (response_format=diarized_json)",
                param="prompt",
            )
        if self.logprobs:
            raise InvalidParameter(
                "include[]=logprobs is not supported with response_format=diarized_json",
                param="include",
            )
        check_known_speakers(self.known_speaker_names, self.known_speaker_references)
        return self


class TranslationRequest(AudioRequest):
    """``POST /v1/audio/translations``: speech in any language as English text."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    response_format: ResponseFormat = ResponseFormat.JSON
    temperature: float = Field(0.0, ge=0.0, le=1.0)

    def format(self) -> ResponseFormat:
        """The answer's format."""
        return self.response_format

    def options(self, settings: Settings) -> TranscribeOptions:
        """The engine options this request asks for (the server's beam size)."""
        return TranscribeOptions(
            task="translate",
            beam_size=settings.default_beam_size,
            temperature=self.temperature,
            prompt=self.prompt or None,
        )
