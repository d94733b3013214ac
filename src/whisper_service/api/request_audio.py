"""Where a request's audio comes from, an upload or a gs:// object: checked, probed
and decoded off the event loop, with the limits. Failures are ServiceErrors naming
the parameter at fault (``file`` or ``gcs_uri``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from fastapi import UploadFile

from whisper_service.audio import (
    AudioError,
    AudioInfo,
    Check,
    DecodedAudio,
    Reserve,
    decode_audio,
    first_reservation,
    probe_audio,
)
from whisper_service.config import Settings
from whisper_service.errors import ContentTooLarge, ServiceError
from whisper_service.observability.telemetry import telemetry
from whisper_service.storage import GcsStorage, GcsUri

# Told the audio's length in seconds before it is decoded (capacity/goodput.py).
Expect = Callable[[float], None]


@dataclass(frozen=True)
class Upload:
    """Audio sent in the request (the ``file`` field)."""

    file: UploadFile


@dataclass(frozen=True)
class GcsObject:
    """Audio in Google Cloud Storage (the ``gcs_uri`` field)."""

    uri: str


AudioSource = Upload | GcsObject


def check_upload_size(upload: UploadFile, settings: Settings) -> None:
    """413 for an upload over the limit (its size is known once received)."""
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ContentTooLarge(settings.max_upload_bytes, upload.size)


async def decode_source(
    source: AudioSource,
    settings: Settings,
    storage: GcsStorage,
    *,
    check: Check | None = None,
    reserve: Reserve | None = None,
    expect: Expect | None = None,
    stereo: bool = False,
) -> DecodedAudio:
    """The source's audio, decoded with the limits; ``check``, ``reserve`` and
    ``stereo`` as for ``audio.decode_audio`` (a deadline, a departed client, the
    memory budget; the two channels kept). ``expect`` hears the audio's length as the
    header states it, before decoding, when it does (goodput admission)."""
    if isinstance(source, Upload):
        check_upload_size(source.file, settings)
        source.file.file.seek(0)
        return await _decode(
            source.file.file,
            source.file.size or 0,
            settings,
            "file",
            _Hooks(check, reserve, expect, stereo),
        )
    with telemetry.span("gcs.download", **{"whisper.gcs.uri": source.uri}):
        try:
            fetched = await asyncio.to_thread(
                storage.download, source.uri, settings.max_upload_bytes
            )
        except ServiceError as exc:
            exc.about("gcs_uri")
            raise
    with fetched:
        return await _decode(
            fetched, 0, settings, "gcs_uri", _Hooks(check, reserve, expect, stereo)
        )


async def probe_upload(upload: UploadFile, settings: Settings) -> AudioInfo:
    """The upload's size, and that its header says audio: the checks that cost no
    decoding (for work that decodes later, such as a job)."""
    check_upload_size(upload, settings)
    upload.file.seek(0)
    try:
        return await asyncio.to_thread(probe_audio, upload.file)
    except ServiceError as exc:
        exc.about("file")
        raise


async def check_gcs_input(uri: str, storage: GcsStorage, settings: Settings) -> str:
    """A gs:// input's allow-list, existence and size, from metadata only; its
    normalised URI."""
    try:
        await asyncio.to_thread(storage.check_input, uri, settings.max_upload_bytes)
    except ServiceError as exc:
        exc.about("gcs_uri")
        raise
    return str(GcsUri.parse(uri))


@dataclass(frozen=True)
class _Hooks:
    """What a decode tells its request as it goes (see ``decode_source``)."""

    check: Check | None
    reserve: Reserve | None
    expect: Expect | None
    stereo: bool


async def _decode(
    source: IO[bytes], size: int, settings: Settings, param: str, hooks: _Hooks
) -> DecodedAudio:
    with telemetry.span("audio.decode", **{"whisper.upload.bytes": size}) as span:
        try:
            if hooks.reserve is not None or hooks.expect is not None:
                await _from_header(source, settings, hooks)
            audio = await asyncio.to_thread(
                decode_audio,
                source,
                max_seconds=settings.max_audio_seconds,
                check=hooks.check,
                reserve=hooks.reserve,
                stereo=hooks.stereo,
            )
        except ServiceError as exc:
            span.set_attribute("error.type", exc.code)
            if isinstance(exc, AudioError):  # the input's fault, not a deadline's
                exc.about(param)
            raise
        span.set_attribute("whisper.audio.duration_seconds", round(audio.duration, 3))
        span.set_attribute("whisper.audio.codec", audio.source_codec)
    return audio


# Header reads for the memory budget, on threads of their own: behind the decodes in
# asyncio's default pool, a request the budget cannot hold would wait for a thread
# (minutes under a burst of long uploads) before being refused.
_HEADERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="audio-header")


async def _from_header(source: IO[bytes], settings: Settings, hooks: _Hooks) -> None:
    """Tell the request its audio's length, and reserve what the decoder's first buffer
    will take, as the header states them, so that what cannot finish or does not fit
    is refused at once (503 deadline_unreachable, memory_pressure) and what fits keeps
    its memory while it waits for a decoding thread."""
    info = await asyncio.get_running_loop().run_in_executor(_HEADERS, probe_audio, source)
    if hooks.expect is not None and info.seconds:
        hooks.expect(min(info.seconds, settings.max_audio_seconds))
    if hooks.reserve is not None:
        reserve = first_reservation(
            info, max_seconds=settings.max_audio_seconds, stereo=hooks.stereo
        )
        hooks.reserve(reserve)
