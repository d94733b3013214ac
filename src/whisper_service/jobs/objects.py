"""Where job objects live: a local directory or a GCS bucket, behind one small
interface.

Every object has a generation that changes on each write. ``write(..., if_generation=g)``
succeeds only if the object is still at ``g`` (0: only if it does not exist). The
directory store's records rely on it (a counter beside each object, compared and
bumped under the folder's lock around the rename); on GCS it is the
``ifGenerationMatch`` precondition, which the job files never need (each is written
whole by one writer) and gcp-storage-emulator ignores anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import structlog

from whisper_service.storage import GcsStorage, GcsUri, StorageUnavailable, call_options

# Temporary files of writes in progress; one this old was left by a crash.
TEMPORARY_PREFIX = ".tmp-"
STALE_TEMPORARY_SECONDS = 3600


log = structlog.get_logger(__name__)


class Conflict(Exception):
    """The object changed (or appeared) since it was read; re-read and retry."""


class ObjectStore(Protocol):
    """Named byte objects with generations."""

    location: str

    def read(self, name: str) -> tuple[bytes, int] | None:
        """The object's bytes and generation, or None if it does not exist."""
        ...

    def write(self, name: str, data: bytes, if_generation: int | None = None) -> int:
        """Write (replace) the object; return its new generation. Raise Conflict when
        ``if_generation`` is given and does not match (0 = must not exist)."""
        ...

    def upload(self, name: str, source: IO[bytes]) -> None:
        """Write a possibly large object from a file, streaming."""
        ...

    def download(self, name: str, target: IO[bytes]) -> bool:
        """Stream the object into ``target``; False if it does not exist."""
        ...

    def names(self, prefix: str) -> list[str]:
        """Names under ``prefix``, sorted."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object; a missing one is not an error."""
        ...


class LocalObjects:
    """Objects as files under a directory (one machine; survives restarts).

    Each object's generation is a counter kept beside it (``.<name>.gen``), not its
    modification time: a coarse clock, a clock step or a restore that keeps mtimes
    could otherwise bring back a generation a stale writer still holds. Reads create
    nothing; a folder is locked through its own descriptor (``flock``), so no lock
    files are left behind either.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            # In a shared /tmp, someone else's directory could feed us job records.
            raise PermissionError(
                f"job store {root} must be owned by this user and writable only by it"
            )
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Temporaries of writes a crash interrupted (live ones are seconds old)."""
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        for temporary in self.root.rglob(f"{TEMPORARY_PREFIX}*"):
            with contextlib.suppress(OSError):
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object name {name!r} escapes the store")
        return path

    @staticmethod
    def _generation_file(path: Path) -> Path:
        return path.with_name(f".{path.name}.gen")

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def _current(self, path: Path) -> tuple[bytes, int] | None:
        """Bytes and generation, read under the folder's lock."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            generation = int(self._generation_file(path).read_text())
        except (FileNotFoundError, ValueError):
            generation = 1  # written before generations were kept beside objects
        return data, generation

    def read(self, name: str) -> tuple[bytes, int] | None:
        """The object's bytes and generation, or None; creates nothing."""
        path = self._path(name)
        if not path.parent.is_dir():
            return None
        with self._locked(path.parent):
            return self._current(path)

    def write(self, name: str, data: bytes, if_generation: int | None = None) -> int:
        """Compare-and-swap under the folder's lock; atomic by rename."""
        path = self._path(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked(path.parent):
            found = self._current(path)
            current = 0 if found is None else found[1]
            if if_generation is not None and current != if_generation:
                raise Conflict(name)
            _replace(path, data)
            _replace(self._generation_file(path), str(current + 1).encode())
            return current + 1

    def upload(self, name: str, source: IO[bytes]) -> None:
        """Copy a file in (temporary file, then rename)."""
        path = self._path(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _replace(path, source)

    def download(self, name: str, target: IO[bytes]) -> bool:
        """Copy the file out; False if missing."""
        try:
            with self._path(name).open("rb") as source:
                shutil.copyfileobj(source, target, 1024 * 1024)
        except FileNotFoundError:
            return False
        return True

    def names(self, prefix: str) -> list[str]:
        """Files under ``prefix`` (a folder path ending in /), sorted."""
        base = self._path(prefix.rstrip("/") or ".") if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                names.append(path.relative_to(self.root).as_posix())
        return sorted(names)

    def folders(self, prefix: str) -> list[str]:
        """Sub-directories of ``prefix``."""
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def delete(self, name: str) -> None:
        """Remove the object (and its generation), and its folder once empty; what is
        already gone is not an error."""
        path = self._path(name)
        path.unlink(missing_ok=True)
        self._generation_file(path).unlink(missing_ok=True)
        if path.parent != self.root.resolve():
            with contextlib.suppress(OSError):  # not empty, or already gone
                path.parent.rmdir()


def _replace(path: Path, content: bytes | IO[bytes]) -> None:
    """Write ``content`` to ``path`` atomically: a temporary file beside it, synced,
    then renamed over it; the temporary never outlives a failure."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(content, bytes):
                out.write(content)
            else:
                shutil.copyfileobj(content, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class GcsObjects:
    """Objects in a bucket under a prefix; generations are GCS generations."""

    def __init__(self, uri: str, client: Any, timeout: float) -> None:
        parsed = GcsUri.parse_prefix(uri)
        self.location = str(parsed)
        self.prefix = parsed.name
        self.timeout = timeout
        self._bucket: Any = client.bucket(parsed.bucket)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from google.api_core import exceptions

        try:
            return fn(*args, **call_options(self.timeout), **kwargs)
        except exceptions.PreconditionFailed as exc:
            raise Conflict(what) from exc
        except exceptions.NotFound:
            raise
        except exceptions.GoogleAPIError as exc:
            # Where the store is and what GCS said are the operator's, not a caller's.
            log.warning("job_store_call_failed", what=what, store=self.location, error=str(exc))
            raise StorageUnavailable("the job store kept failing; retry later") from exc

    def read(self, name: str) -> tuple[bytes, int] | None:
        """Download with the generation it had."""
        from google.api_core import exceptions

        blob = self._bucket.blob(self.prefix + name)
        try:
            data = self._call(f"reading {name}", blob.download_as_bytes)
        except exceptions.NotFound:
            return None
        return data, int(blob.generation or 0)

    def write(self, name: str, data: bytes, if_generation: int | None = None) -> int:
        """Upload with ``ifGenerationMatch`` (GCS's compare-and-swap)."""
        blob = self._bucket.blob(self.prefix + name)
        self._call(
            f"writing {name}",
            blob.upload_from_string,
            data,
            content_type="application/json",
            if_generation_match=if_generation,
        )
        return int(blob.generation or 0)

    def upload(self, name: str, source: IO[bytes]) -> None:
        """Resumable upload from a file."""
        blob = self._bucket.blob(self.prefix + name)
        self._call(f"uploading {name}", blob.upload_from_file, source, rewind=True)

    def download(self, name: str, target: IO[bytes]) -> bool:
        """Streamed download; False if missing."""
        from google.api_core import exceptions

        try:
            self._call(
                f"downloading {name}",
                self._bucket.blob(self.prefix + name).download_to_file,
                target,
            )
        except exceptions.NotFound:
            return False
        return True

    def names(self, prefix: str) -> list[str]:
        """Object names under ``prefix``, relative to the store's own prefix."""

        def names(timeout: float, retry: Any) -> list[str]:
            # Pages are fetched while iterating: keep that inside the error mapping.
            blobs = self._bucket.client.list_blobs(
                self._bucket, prefix=self.prefix + prefix, timeout=timeout, retry=retry
            )
            return [str(b.name) for b in blobs]

        return sorted(n[len(self.prefix) :] for n in self._call(f"listing {prefix}", names))

    def delete(self, name: str) -> None:
        """Delete; a missing object is fine."""
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound):
            self._call(f"deleting {name}", self._bucket.blob(self.prefix + name).delete)


def open_objects(location: str, storage: GcsStorage) -> ObjectStore:
    """The backend ``location`` names: gs://bucket/prefix or a directory."""
    if location.startswith("gs://"):
        return GcsObjects(location, storage.client(), storage.settings.gcs_timeout_seconds)
    return LocalObjects(Path(location))
