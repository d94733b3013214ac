"""Bulk transcription as a Cloud Run Job: ``whisper-service batch --input gs://b/in/
--output gs://b/out/`` transcribes every object under the input prefix.

- **Sharding**: a Cloud Run Job runs ``CLOUD_RUN_TASK_COUNT`` tasks, each told its
  ``CLOUD_RUN_TASK_INDEX``; the objects, sorted by name, go to task ``i % count``.
  Every task lists the same prefix, so no coordination is needed.
- **Resuming**: the transcript of ``in/<name>`` is ``out/<name>.<format>``, written
  only if absent (``ifGenerationMatch=0``); an object whose transcript exists is
  skipped, so a retried or rerun task does only what is left.
- **Failures**: what is the input's fault (not audio, too long, too big) is recorded
  in ``out/_failures/task-<index>-of-<count>.json`` with the reason, and the task goes
  on; storage trouble is recorded too and makes the task exit 1, so that Cloud Run
  retries it (and the retry resumes).
- **Names**: transcripts and manifests never share a name. An input under
  ``in/_failures/`` would map onto the manifests, and a ``.`` or ``..`` segment names a
  file outside the output once the prefix is copied to a disk; such inputs are refused
  (``invalid_object_name``, in the manifest), never transcribed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from whisper_service.audio import decode_audio
from whisper_service.config import Settings
from whisper_service.engines.base import Engine, TranscribeOptions
from whisper_service.errors import ServiceError
from whisper_service.formats import MEDIA_TYPES, ResponseFormat, transcript_file
from whisper_service.long_audio import transcribe_audio
from whisper_service.storage import GcsStorage, GcsUri, StorageError, StorageUnavailable

log = structlog.get_logger(__name__)

FAILURES = "_failures/"


@dataclass
class Shard:
    """This task's place among the job's tasks."""

    index: int
    count: int

    @classmethod
    def from_env(cls) -> Shard:
        """From Cloud Run's CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT (0 of 1 when
        run by hand)."""
        index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0"))
        count = int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
        if not 0 <= index < count:
            raise ValueError(f"task index {index} is not within the task count {count}")
        return cls(index, count)

    def mine(self, names: list[str]) -> list[str]:
        """The names this task transcribes (``names`` sorted)."""
        return [n for i, n in enumerate(sorted(names)) if i % self.count == self.index]


def prefixes(input_uri: str, output_uri: str) -> tuple[GcsUri, GcsUri]:
    """The input and output prefixes; neither may hold the other (a rerun would then
    transcribe transcripts)."""
    source, target = GcsUri.parse_prefix(input_uri), GcsUri.parse_prefix(output_uri)
    if source.bucket == target.bucket and (
        target.name.startswith(source.name) or source.name.startswith(target.name)
    ):
        raise ValueError("--output must not be inside --input, nor --input inside --output")
    return source, target


def name_refusal(relative: str) -> str | None:
    """Why an input named ``relative`` (below the input prefix) may not be transcribed
    into the output prefix, if it may not."""
    if relative.startswith(FAILURES):
        return f"its transcript would be named like the task manifests ({FAILURES})"
    if any(segment in (".", "..") for segment in relative.split("/")):
        return "a '.' or '..' segment in its name would reach outside the output once copied"
    return None


@dataclass
class Report:
    """What one run of a task did; written to the failures manifest."""

    task: int
    count: int
    input: str
    output: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    retryable: int = 0


@dataclass
class BatchRun:
    """Transcribes one shard of ``input_uri`` into ``output_uri``."""

    settings: Settings
    engine: Engine
    input_uri: str
    output_uri: str
    response_format: ResponseFormat = ResponseFormat.JSON
    options: TranscribeOptions = field(default_factory=TranscribeOptions)

    def __post_init__(self) -> None:
        self.source, self.target = prefixes(self.input_uri, self.output_uri)
        # The operator named the input bucket on the command line: it is allowed.
        allowed = self.settings.model_copy(update={"gcs_allowed_buckets": [self.source.bucket]})
        self.storage = GcsStorage(allowed)
        self.timeout = self.settings.gcs_timeout_seconds

    def _names(self, uri: GcsUri) -> list[str]:
        from google.api_core import exceptions

        try:
            blobs = self.storage.client().list_blobs(
                uri.bucket, prefix=uri.name, timeout=self.timeout
            )
            return [str(b.name) for b in blobs if not str(b.name).endswith("/")]
        except exceptions.GoogleAPIError as exc:
            raise StorageUnavailable(f"listing {uri} failed: {exc}") from exc

    def run(self, shard: Shard) -> Report:
        """Transcribe this shard's objects that have no transcript yet."""
        report = Report(shard.index, shard.count, self.input_uri, self.output_uri)
        existing = set(self._names(self.target))
        for name in shard.mine(self._names(self.source)):
            relative = name[len(self.source.name) :]
            refusal = name_refusal(relative)
            if refusal is not None:
                report.failed.append(
                    {"object": relative, "code": "invalid_object_name", "reason": refusal}
                )
                log.warning("batch_object_refused", object=relative, reason=refusal)
                continue
            output = f"{self.target.name}{relative}.{self._extension()}"
            if output in existing:
                report.skipped.append(relative)
                continue
            try:
                self._transcribe(name, relative, output)
            except ServiceError as exc:
                retryable = isinstance(exc, StorageError) and exc.status >= 500
                report.retryable += retryable
                report.failed.append({"object": relative, "code": exc.code, "reason": exc.message})
                log.warning("batch_object_failed", object=relative, code=exc.code,
                            retryable=retryable)  # fmt: skip
                continue
            report.done.append(relative)
        self._write_report(report)
        return report

    def _extension(self) -> str:
        return (
            "json"
            if self.response_format is ResponseFormat.VERBOSE_JSON
            else (self.response_format.value)
        )

    def _transcribe(self, name: str, relative: str, output: str) -> None:
        from google.api_core import exceptions

        started = time.monotonic()
        uri = f"gs://{self.source.bucket}/{name}"
        with self.storage.download(uri, self.settings.max_upload_bytes) as source:
            audio = decode_audio(source, max_seconds=self.settings.jobs_max_audio_seconds)
        result = transcribe_audio(
            self.engine, audio.samples, self.options, long_from=self.settings.long_audio_from
        )
        content, _ = transcript_file(result, self.response_format)
        blob = self.storage.client().bucket(self.target.bucket).blob(output)
        try:
            blob.upload_from_string(
                content,
                content_type=MEDIA_TYPES[self.response_format],
                if_generation_match=0,
                timeout=self.timeout,
            )
        except exceptions.PreconditionFailed:
            log.info("batch_output_exists", output=output)  # another run wrote it first
        except exceptions.GoogleAPIError as exc:
            raise StorageUnavailable(f"writing gs://{self.target.bucket}/{output}: {exc}") from exc
        log.info("batch_object_done", object=relative, audio_seconds=round(audio.duration, 3),
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip

    def _write_report(self, report: Report) -> None:
        """Replace this task's manifest with this run's (what is left after a rerun)."""
        from google.api_core import exceptions

        name = f"{self.target.name}{FAILURES}task-{report.task:05d}-of-{report.count:05d}.json"
        data: dict[str, Any] = asdict(report)
        blob = self.storage.client().bucket(self.target.bucket).blob(name)
        try:
            blob.upload_from_string(
                json.dumps(data, indent=2), content_type="application/json", timeout=self.timeout
            )
        except exceptions.GoogleAPIError as exc:
            raise StorageUnavailable(f"writing the manifest {name}: {exc}") from exc
