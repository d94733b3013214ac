"""Google Cloud Storage: ``gs://`` audio inputs and transcript outputs.

Credentials are Application Default Credentials (the Cloud Run service account;
`gcloud auth application-default login` on a laptop), never key files. With
``STORAGE_EMULATOR_HOST`` set, the client talks to that emulator anonymously.

Inputs are checked before any byte moves: the bucket must be on the allow-list, the
object must exist, and its size (from metadata) must fit the upload limit. The
download then streams to a temporary file. Calls retry with exponential backoff on
429, 5xx and connection errors (google-cloud-storage's policy) within a deadline.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from whisper_service.config import Settings
from whisper_service.errors import ServiceError

log = structlog.get_logger(__name__)

# Bucket names: 3-63 characters (222 with dots) of lower-case letters, digits, -, _ and .
_BUCKET = r"([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])"
_GCS_URI = re.compile(rf"^gs://{_BUCKET}/(.+)$")
_GCS_PREFIX = re.compile(rf"^gs://{_BUCKET}(?:/(.*))?$")
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class StorageError(ServiceError):
    """A gs:// input or output could not be used."""

    status = 400
    code = "invalid_gcs_uri"


class BucketNotAllowed(StorageError):
    """The bucket is not on WHISPER_GCS_ALLOWED_BUCKETS."""

    code = "gcs_bucket_not_allowed"


class ObjectNotFound(StorageError):
    """No such object (or no such bucket)."""

    status = 404
    code = "gcs_object_not_found"


class ObjectTooLarge(StorageError):
    """The object is larger than the upload limit; nothing was downloaded."""

    status = 413
    code = "file_too_large"


class StorageUnavailable(StorageError):
    """GCS kept failing (after retries) or refused the service's access."""

    status = 502
    code = "gcs_unavailable"


class NoCredentials(StorageError):
    """The process has no Google credentials (or they no longer work)."""

    status = 503
    code = "storage_unavailable"


class EncodedObject(StorageError):
    """The object is stored with a Content-Encoding (gzip): its size in the metadata
    says nothing of what it would decompress to."""

    status = 415
    code = "gcs_object_encoded"


class ObjectGrew(StorageError):
    """More bytes arrived than the object's metadata promised."""

    status = 413
    code = "file_too_large"


class OutputExists(StorageError):
    """An output of that name exists already; outputs are never overwritten."""

    status = 409
    code = "gcs_output_exists"

    def __init__(self, uri: str) -> None:
        super().__init__(f"{uri} exists already; it is not overwritten")
        self.uri = uri


@dataclass(frozen=True)
class GcsUri:
    """A parsed ``gs://bucket/object`` address."""

    bucket: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> GcsUri:
        """Parse or raise StorageError saying what a valid URI looks like."""
        match = _GCS_URI.match(uri.strip())
        if match is None:
            raise StorageError(f"{uri!r} is not a gs://bucket/object URI")
        return cls(match.group(1), match.group(2))

    @classmethod
    def parse_prefix(cls, uri: str) -> GcsUri:
        """Parse ``gs://bucket[/prefix]``; the name is the prefix with a trailing slash
        (empty for the whole bucket)."""
        match = _GCS_PREFIX.match(uri.strip())
        if match is None:
            raise StorageError(f"{uri!r} is not a gs://bucket/prefix URI")
        prefix = (match.group(2) or "").strip("/")
        return cls(match.group(1), f"{prefix}/" if prefix else "")

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class _CappedWriter:
    """A file that refuses to grow past ``limit`` bytes (GCS may send more than the
    metadata said: the object was replaced, or a proxy decompressed it)."""

    def __init__(self, target: IO[bytes], limit: int) -> None:
        self._target = target
        self._limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise ObjectGrew(f"the object sent more than the {self._limit} byte limit")
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()

    def seek(self, offset: int, whence: int = 0) -> int:
        # The library rewinds to 0 only to start over; the count starts over with it.
        self.written = offset
        return self._target.seek(offset, whence)


class GcsStorage:
    """GCS access for one process; the client is created on first use.

    Errors say what the caller can act on (its own URI, not found, too big, not
    allowed); what only the operator needs (the allow-list, the service account, the
    library's message) goes to the log.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    def client(self) -> Any:
        """The process's storage client (created on first use; shared by inputs,
        outputs and the job store). Raises NoCredentials without credentials."""
        if self._client is None:
            try:
                self._client = model_client(self.settings.gcp_project)
            except _auth_errors() as exc:
                raise _no_credentials(exc) from exc
        return self._client

    def check_allowed(self, uri: GcsUri) -> None:
        """Refuse buckets that are not on the allow-list (an empty list allows none)."""
        if uri.bucket not in self.settings.gcs_allowed_buckets:
            log.info("gcs_bucket_not_allowed", bucket=uri.bucket)
            raise BucketNotAllowed(f"bucket {uri.bucket!r} is not one this service reads")

    def _blob(self, uri: GcsUri) -> Any:
        """The object's metadata (no content), or ObjectNotFound."""
        from google.api_core import exceptions

        try:
            blob = (
                self.client()
                .bucket(uri.bucket)
                .get_blob(uri.name, **call_options(self.settings.gcs_timeout_seconds))
            )
        except exceptions.NotFound:
            blob = None
        except exceptions.GoogleAPIError as exc:
            raise _unavailable(f"reading {uri}", exc) from exc
        except _auth_errors() as exc:
            raise _no_credentials(exc) from exc
        if blob is None:
            raise ObjectNotFound(f"{uri} does not exist")
        return blob

    def check_input(self, uri_text: str, max_bytes: int) -> Any:
        """The object's metadata, once the URI parses, its bucket is allowed, it exists,
        it is stored as is (no Content-Encoding) and it fits ``max_bytes``: every check
        an input gets before a byte is read. Blocking: call from a thread."""
        uri = GcsUri.parse(uri_text)
        self.check_allowed(uri)
        blob = self._blob(uri)
        if blob.content_encoding:
            raise EncodedObject(
                f"{uri} is stored with Content-Encoding: {blob.content_encoding}; store the "
                "audio as it is (audio formats are compressed already)"
            )
        if blob.size is not None and blob.size > max_bytes:
            log.info("gcs_object_too_large", uri=str(uri), size=blob.size, limit=max_bytes)
            raise ObjectTooLarge(f"{uri} is {blob.size} bytes; the limit is {max_bytes}")
        return blob

    def download(self, uri_text: str, max_bytes: int) -> IO[bytes]:
        """The object's bytes, exactly as stored, in a temporary file (positioned at 0),
        after check_input: the generation checked is the one read, never decompressed,
        never more than ``max_bytes``. Blocking: call from a thread."""
        from google.api_core import exceptions

        blob = self.check_input(uri_text, max_bytes)
        uri = GcsUri.parse(uri_text)
        timeout = self.settings.gcs_timeout_seconds
        target = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
        try:
            blob.download_to_file(
                _CappedWriter(target, max_bytes),
                raw_download=True,
                if_generation_match=blob.generation,
                **call_options(timeout),
            )
        except exceptions.PreconditionFailed as exc:
            target.close()
            raise ObjectGrew(f"{uri} changed while it was being read; send it again") from exc
        except exceptions.GoogleAPIError as exc:
            target.close()
            raise _unavailable(f"downloading {uri}", exc) from exc
        except _auth_errors() as exc:
            target.close()
            raise _no_credentials(exc) from exc
        except BaseException:
            target.close()
            raise
        target.seek(0)
        log.info("gcs_downloaded", uri=str(uri), size=blob.size)
        return target

    def upload_text(self, name: str, extension: str, content: str, media_type: str) -> str:
        """Write a transcript to ``<WHISPER_GCS_OUTPUT_URI>/<name>.<extension>``, only if
        no object has that name (``name`` is a server-made id: nobody chooses it)."""
        from google.api_core import exceptions

        if not self.settings.gcs_output_uri:
            raise StorageError("no output location: set WHISPER_GCS_OUTPUT_URI")
        base = GcsUri.parse_prefix(self.settings.gcs_output_uri)
        uri = GcsUri(base.bucket, f"{base.name}{name}.{extension}")
        try:
            blob = self.client().bucket(uri.bucket).blob(uri.name)
            blob.upload_from_string(
                content,
                content_type=media_type,
                if_generation_match=0,
                **call_options(self.settings.gcs_timeout_seconds),
            )
        except exceptions.PreconditionFailed as exc:
            raise OutputExists(str(uri)) from exc
        except exceptions.GoogleAPIError as exc:
            raise _unavailable(f"writing {uri}", exc) from exc
        except _auth_errors() as exc:
            raise _no_credentials(exc) from exc
        return str(uri)


def _unavailable(what: str, exc: Exception) -> StorageUnavailable:
    """GCS failed: the library's words (service account, project) to the log only."""
    log.warning("gcs_call_failed", what=what, error=str(exc), error_class=type(exc).__name__)
    return StorageUnavailable(f"{what} failed: Cloud Storage refused or kept failing; retry later")


def _auth_errors() -> type[Exception]:
    """google-auth's errors: no credentials found, or ones that no longer refresh."""
    from google.auth.exceptions import GoogleAuthError

    error: type[Exception] = GoogleAuthError
    return error


def _no_credentials(exc: Exception) -> NoCredentials:
    """Missing or broken credentials: the details to the log, a 503 to the caller."""
    log.error("gcs_credentials_unusable", error=str(exc), error_class=type(exc).__name__)
    return NoCredentials(
        "this service has no working Google credentials for Cloud Storage; retry later "
        "(the service logs say why)"
    )


def download_prefix(client: Any, uri_text: str, target: Path, timeout: float) -> list[Path]:
    """Copy every object under ``gs://bucket/prefix/`` into ``target`` (same relative
    names), skipping files already there with the same size. Returns the local files.
    Raises ObjectNotFound when the prefix holds nothing."""
    from google.api_core import exceptions

    uri = GcsUri.parse_prefix(uri_text)
    prefix = uri.name
    try:
        blobs = [b for b in client.list_blobs(uri.bucket, prefix=prefix, **call_options(timeout))
                 if not b.name.endswith("/")]  # fmt: skip
    except exceptions.NotFound as exc:
        raise ObjectNotFound(f"bucket {uri.bucket!r} does not exist") from exc
    except exceptions.GoogleAPIError as exc:
        raise StorageUnavailable(f"listing {uri} failed: {exc}") from exc
    if not blobs:
        raise ObjectNotFound(f"nothing under {uri}")
    files = []
    for blob in blobs:
        local = target / blob.name[len(prefix) :]
        if not (local.is_file() and local.stat().st_size == blob.size):
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(local.name + ".partial")
            try:
                blob.download_to_filename(str(partial), **call_options(timeout))
            except exceptions.GoogleAPIError as exc:
                raise StorageUnavailable(
                    f"downloading gs://{uri.bucket}/{blob.name}: {exc}"
                ) from exc
            partial.replace(local)
            log.info(
                "gcs_model_file_downloaded", uri=f"gs://{uri.bucket}/{blob.name}", size=blob.size
            )
        files.append(local)
    return files


def call_options(seconds: float) -> dict[str, Any]:
    """Keyword arguments bounding one GCS call: each HTTP attempt, and the retries
    with backoff on 429, 5xx and connection errors (google-cloud-storage's policy),
    end within ``seconds`` (the library's own retry budget is 120 s)."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return {"timeout": seconds, "retry": DEFAULT_RETRY.with_timeout(seconds)}


def model_client(project: str | None) -> Any:
    """A storage client for model downloads (emulator-aware, ADC otherwise)."""
    from google.cloud import storage

    if os.environ.get(EMULATOR_ENV):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "local-emulator",
            credentials=AnonymousCredentials(),
        )
    return storage.Client(project=project)
