"""Request parameters both APIs take, checked: the language, and the speakers (as the
diarization step's options).

``/transcribe`` and ``/jobs`` take ``diarize=true|channel`` with ``min_speakers`` and
``max_speakers``; ``/v1/audio/transcriptions`` diarizes for
``response_format=diarized_json``, and takes OpenAI's ``known_speaker_names[]`` with
``known_speaker_references[]``: data URLs of 2 to 10 s clips, decoded here (before any
work is admitted, so a bad clip is a 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from enum import StrEnum

from whisper_service.audio import AudioError, AudioTooLong, decode_audio
from whisper_service.config import Settings
from whisper_service.diarization.speakers import DiarizeOptions, KnownVoice
from whisper_service.engines.languages import normalize_language
from whisper_service.errors import InvalidParameter, ServiceError

MAX_KNOWN_SPEAKERS = 4
REFERENCE_SECONDS = (2.0, 10.0)
# A data URL's audio, base64 (about 4/3 of a 10 s WAV at 48 kHz stereo, with room).
MAX_REFERENCE_CHARS = 4 * 1024 * 1024
_DATA_URL = re.compile(r"^data:audio/[\w.+-]+;base64,(?P<data>[A-Za-z0-9+/=\s]+)$")


def parse_language(value: str | None) -> str | None:
    """A language field (code or English name) as a code; 400 naming it otherwise."""
    try:
        return normalize_language(value)
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_language", status=400, param="language") from exc


class Diarize(StrEnum):
    """``diarize``: no speakers, speakers told apart by voice, or one per channel."""

    FALSE = "false"
    TRUE = "true"
    CHANNEL = "channel"


def diarize_options(
    settings: Settings,
    diarize: Diarize,
    min_speakers: int | None,
    max_speakers: int | None,
    known: tuple[KnownVoice, ...] = (),
) -> DiarizeOptions | None:
    """The diarization asked for (None: none); 400 for bounds that cannot hold, and
    for diarization on a service that has it turned off."""
    if diarize is Diarize.FALSE:
        for name, value in (("min_speakers", min_speakers), ("max_speakers", max_speakers)):
            if value is not None:
                raise InvalidParameter(f"{name} needs diarize=true", param=name)
        return None
    if not settings.diarization:
        raise ServiceError(
            "speaker diarization is turned off on this service (WHISPER_DIARIZATION=false)",
            code="unsupported_option",
            status=400,
            param="diarize",
        )
    ceiling = settings.diarization_max_speakers
    if max_speakers is not None and max_speakers > ceiling:
        raise InvalidParameter(
            f"max_speakers must be at most {ceiling} on this service", param="max_speakers"
        )
    low, high = min_speakers or 1, max_speakers or ceiling
    if low > high:
        raise InvalidParameter(
            f"min_speakers ({low}) must not exceed max_speakers ({high})", param="min_speakers"
        )
    if diarize is Diarize.CHANNEL and (min_speakers or max_speakers or known):
        raise InvalidParameter(
            "diarize=channel has one speaker per channel: min_speakers, max_speakers and "
            "known speakers apply to diarize=true",
            param="diarize",
        )
    if diarize is Diarize.CHANNEL:
        return DiarizeOptions(mode="channel")
    return DiarizeOptions(mode="voices", min_speakers=low, max_speakers=high, known=known)


def check_known_speakers(names: list[str], references: list[str]) -> None:
    """OpenAI's rules for the lists themselves: at most 4, paired, distinct names
    (each reference's data URL is checked as it is decoded)."""
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidParameter(
            f"at most {MAX_KNOWN_SPEAKERS} known speakers are supported",
            param="known_speaker_names",
        )
    if len(names) != len(references):
        raise InvalidParameter(
            "known_speaker_names[] and known_speaker_references[] must pair up "
            f"({len(names)} names, {len(references)} references)",
            param="known_speaker_references",
        )
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise InvalidParameter(
            "known_speaker_names[] must be distinct, non-empty names",
            param="known_speaker_names",
        )


def _reference_bytes(reference: str) -> bytes:
    match = _DATA_URL.match(reference.strip()) if len(reference) <= MAX_REFERENCE_CHARS else None
    try:
        if match is None:
            raise ValueError
        return base64.b64decode(match["data"], validate=False)
    except (ValueError, binascii.Error) as exc:
        raise InvalidParameter(
            "each known_speaker_references[] entry must be an audio data URL of at most "
            f"{MAX_REFERENCE_CHARS // 2**20} MiB (data:audio/wav;base64,...)",
            param="known_speaker_references",
        ) from exc


def _decode_reference(name: str, reference: str) -> KnownVoice:
    low, high = REFERENCE_SECONDS
    too_long = InvalidParameter(
        f"the reference clip of {name!r} is longer than {high:g} s; each must be "
        f"{low:g} to {high:g} s",
        param="known_speaker_references",
    )
    try:
        audio = decode_audio(io.BytesIO(_reference_bytes(reference)), max_seconds=high + 0.5)
    except AudioTooLong as exc:
        raise too_long from exc
    except AudioError as exc:
        raise InvalidParameter(
            f"the reference clip of {name!r} is not usable audio: {exc.message}",
            param="known_speaker_references",
        ) from exc
    # Half a second of slack at the top: containers pad their last frame.
    if audio.duration < low:
        raise InvalidParameter(
            f"the reference clip of {name!r} lasts {audio.duration:.1f} s; each must be "
            f"{low:g} to {high:g} s",
            param="known_speaker_references",
        )
    return KnownVoice(name.strip(), audio.samples)


async def known_voices(names: list[str], references: list[str]) -> tuple[KnownVoice, ...]:
    """The reference clips decoded (off the event loop); 400 for any that is not 2 to
    10 s of decodable audio."""
    check_known_speakers(names, references)
    return tuple(
        [
            await asyncio.to_thread(_decode_reference, name, reference)
            for name, reference in zip(names, references, strict=True)
        ]
    )
