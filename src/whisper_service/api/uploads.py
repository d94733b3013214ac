"""Turn an uploaded file into decoded audio, mapping every failure to a clear 4xx."""

from __future__ import annotations

import asyncio
from typing import IO

from fastapi import UploadFile

from whisper_service.api.errors import ApiError
from whisper_service.audio import AudioError, DecodedAudio, decode_audio, probe_audio
from whisper_service.observability.telemetry import telemetry
from whisper_service.settings import Settings
from whisper_service.storage import GcsStorage, GcsUri, StorageError


def check_upload_size(upload: UploadFile, settings: Settings) -> None:
    """413 for an upload over the limit (its size is known once received)."""
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ApiError(
            413,
            "file_too_large",
            f"the file is {upload.size} bytes; the limit is {settings.max_upload_bytes}",
            param="file",
        )


async def decode_upload(upload: UploadFile, settings: Settings) -> DecodedAudio:
    """Check the upload's size, then decode it off the event loop with the limits."""
    check_upload_size(upload, settings)
    upload.file.seek(0)
    return await _decode(upload.file, upload.size or 0, settings, "file")


async def probe_upload(upload: UploadFile, settings: Settings) -> None:
    """The upload's size, and that its header says audio: the checks that cost no
    decoding (for work that decodes later, such as a job)."""
    check_upload_size(upload, settings)
    upload.file.seek(0)
    try:
        await asyncio.to_thread(probe_audio, upload.file)
    except AudioError as exc:
        raise ApiError(exc.status, exc.code, exc.message, param="file") from exc


async def check_gcs_input(uri: str, storage: GcsStorage, settings: Settings) -> str:
    """A gs:// input's allow-list, existence and size, from metadata only; its
    normalised URI."""
    try:
        await asyncio.to_thread(storage.check_input, uri, settings.max_upload_bytes)
    except StorageError as exc:
        raise ApiError(exc.status, exc.code, exc.message, param="gcs_uri") from exc
    return str(GcsUri.parse(uri))


async def decode_gcs(uri: str, storage: GcsStorage, settings: Settings) -> DecodedAudio:
    """Fetch a gs:// object (allow-list, existence and size checked first) and decode it."""
    with telemetry.span("gcs.download", **{"whisper.gcs.uri": uri}):
        try:
            fetched = await asyncio.to_thread(storage.download, uri, settings.max_upload_bytes)
        except StorageError as exc:
            raise ApiError(exc.status, exc.code, exc.message, param="gcs_uri") from exc
    with fetched:
        return await _decode(fetched, 0, settings, "gcs_uri")


async def _decode(source: IO[bytes], size: int, settings: Settings, param: str) -> DecodedAudio:
    with telemetry.span("audio.decode", **{"whisper.upload.bytes": size}) as span:
        try:
            audio = await asyncio.to_thread(
                decode_audio, source, max_seconds=settings.max_audio_seconds
            )
        except AudioError as exc:
            span.set_attribute("error.type", exc.code)
            raise ApiError(exc.status, exc.code, exc.message, param=param) from exc
        span.set_attribute("whisper.audio.duration_seconds", round(audio.duration, 3))
        span.set_attribute("whisper.audio.codec", audio.source_codec)
    return audio
