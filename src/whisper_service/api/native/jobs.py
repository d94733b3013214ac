"""Async jobs over HTTP: POST /jobs, GET /jobs, GET /jobs/{id}, GET /jobs/{id}/result,
DELETE /jobs/{id}.

Everything that can be checked about a job without transcribing it is checked here,
before answering 202: options, the gs:// object (allow-list, existence, size from its
metadata), that an upload is audio at all. What only decoding can tell (corrupt data
half-way, audio too long) ends the job failed with the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from whisper_service.api.deps import ClientDep, EngineDep, JobsDep, RuntimeDep
from whisper_service.api.native.form import TranscriptionForm
from whisper_service.api.native.schemas import (
    JobErrorOut,
    JobList,
    JobProgressOut,
    JobTranscript,
    JobUnitsOut,
    JobView,
)
from whisper_service.api.request_audio import check_gcs_input, probe_upload
from whisper_service.api.schemas import SegmentOut, error_responses, json_response, speaker_fields
from whisper_service.api.transcription import TEXT_FORMAT_CONTENT, render
from whisper_service.diarization import DiarizeOptions
from whisper_service.diarization.transcripts import not_two_channels
from whisper_service.engines import Transcription
from whisper_service.engines.base import check_options
from whisper_service.errors import ServiceError
from whisper_service.formats import ResponseFormat
from whisper_service.jobs.records import (
    Job,
    JobOptions,
    JobProgress,
    JobSource,
    JobStatus,
    new_job_id,
)
from whisper_service.jobs.service import Jobs
from whisper_service.jobs.store import JobNotFound
from whisper_service.observability.context import request_id_var
from whisper_service.storage import StorageError

router = APIRouter(tags=["jobs"])
log = structlog.get_logger(__name__)

# How often a client should poll a job that is not finished, in seconds.
POLL_SECONDS = 2


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def job_view(request: Request, job: Job) -> JobView:
    """A job as the API shows it (never the submitter's key id, nor which process
    queued it)."""
    base = str(request.base_url).rstrip("/")
    view = JobView(
        id=job.id,
        status=job.status.value,
        status_url=f"{base}/jobs/{job.id}",
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        finished_at=_iso(job.finished_at),
        progress=_progress(job.progress),
        source=job.source.model_dump(exclude_none=True),
        options=job.options.model_dump(mode="json"),
        language=job.language,
        units=JobUnitsOut(total=job.units_total, done=len(job.units_done)),
        attempts=job.attempts,
        expires_at=job.expires_at.isoformat(timespec="seconds") if job.expires_at else None,
        error=JobErrorOut(**job.error.model_dump()) if job.error else None,
    )
    if job.status is JobStatus.SUCCEEDED:
        view.result_url = f"{base}/jobs/{job.id}/result"
        if job.output_uri:
            view.output_uri = job.output_uri
    return view


def _progress(progress: JobProgress) -> JobProgressOut:
    """Progress as shown: instances add to it side by side, without a transaction, so
    it is bounded by the totals here."""
    total, windows = progress.audio_seconds_total, progress.windows_total
    return JobProgressOut(
        audio_seconds_done=min(progress.audio_seconds_done, total or progress.audio_seconds_done),
        audio_seconds_total=total,
        windows_done=min(progress.windows_done, windows or progress.windows_done),
        windows_total=windows,
        percent=progress.percent,
    )


def _segments(job: Job, result: Transcription) -> list[SegmentOut]:
    return [SegmentOut.of(s, with_words=job.options.word_timestamps) for s in result.segments]


def _speakers(job: Job, result: Transcription) -> dict[str, Any]:
    """A diarized job's speakers and utterances, as /transcribe answers them."""
    return {} if job.options.diarize == "none" else speaker_fields(result)


def _job_not_found(job_id: str) -> ServiceError:
    return ServiceError(f"no job {job_id!r}", code="job_not_found", status=404, param="job_id")


def _store_unavailable(detail: str) -> ServiceError:
    # The store's name and what failed there go to the log; the caller learns to retry.
    log.warning("job_store_unavailable", error=detail)
    return ServiceError(
        "the job store is unavailable; retry later",
        code="job_store_unavailable",
        status=503,
        headers={"Retry-After": "5"},
    )


async def _owned_job(jobs: Jobs, client: str | None, job_id: str) -> Job:
    try:
        job = await asyncio.to_thread(jobs.store.get, job_id)
    except StorageError as exc:
        raise _store_unavailable(exc.message) from exc
    if job is None or job.client != client:
        # Someone else's job is reported exactly like a missing one.
        raise _job_not_found(job_id)
    return job


@router.post(
    "/jobs",
    status_code=202,
    summary="Start an async transcription (long audio)",
    response_model=JobView,
    responses=error_responses(400, 401, 404, 413, 415, 422, 429, 501, 503),
)
async def create_job(
    request: Request,
    runtime: RuntimeDep,
    engine: EngineDep,
    jobs: JobsDep,
    client: ClientDep,
    form: Annotated[TranscriptionForm, Depends()],
) -> JSONResponse:
    """Accept a job: 202 with its id and ``status_url`` (also in ``Location``)."""
    settings = runtime.settings
    form.check_source(settings)
    diarization = form.diarization(settings)
    speakers = diarization or DiarizeOptions()
    # A job keeps the same decoding options as /transcribe, plus what it does with them.
    options = JobOptions(
        **asdict(form.options(settings)),
        response_format=form.response_format,
        save_to_gcs=form.save_to_gcs,
        diarize="none" if diarization is None else diarization.mode,
        min_speakers=speakers.min_speakers,
        max_speakers=speakers.max_speakers,
    )
    check_options(engine, options.transcribe_options())
    upload: IO[bytes] | None = None
    if form.file is not None:
        info = await probe_upload(form.file, settings)
        if options.diarize == "channel" and info.channels != 2:
            # What the header says; a stereo file with one signal twice fails when planned.
            raise not_two_channels(info.channels)
        upload = form.file.file
        source = JobSource(kind="upload", filename=form.file.filename, bytes=form.file.size)
    else:
        uri = await check_gcs_input(str(form.gcs_uri), runtime.storage, settings)
        source = JobSource(kind="gcs", uri=uri)
    job = Job(
        id=new_job_id(),
        client=client,
        request_id=request_id_var.get(),
        source=source,
        options=options,
    )
    try:
        job = await jobs.submit(job, upload)
    except StorageError as exc:
        raise _store_unavailable(exc.message) from exc
    except OSError as exc:  # a directory store: disk full, permissions changed
        raise _store_unavailable(f"{type(exc).__name__}: {exc}") from exc
    view = job_view(request, job)
    return json_response(view, 202, headers={"Location": view.status_url})


@router.get("/jobs", summary="List recent jobs (newest first)", responses=error_responses(401, 501))
async def list_jobs(
    request: Request,
    jobs: JobsDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state")] = None,
) -> JobList:
    """The caller's most recent jobs."""

    try:
        found = await asyncio.to_thread(jobs.store.recent, client, status, limit)
    except StorageError as exc:
        raise _store_unavailable(exc.message) from exc
    return JobList(data=[job_view(request, j) for j in found])


@router.get(
    "/jobs/{job_id}",
    summary="A job's status, progress and (when done) result",
    response_model=JobView,
    responses=error_responses(401, 404, 501),
)
async def get_job(request: Request, jobs: JobsDep, client: ClientDep, job_id: str) -> JSONResponse:
    """The job; a finished one carries its transcript inline (``result``)."""
    job = await _owned_job(jobs, client, job_id)
    view = job_view(request, job)
    headers = {}
    if job.status is JobStatus.SUCCEEDED:
        result = await asyncio.to_thread(jobs.files.get_result, job.id)
        if result is not None:
            view.result = JobTranscript(
                text=result.text,
                language=result.language,
                language_probability=round(result.language_probability, 4),
                duration=round(result.duration, 3),
                segments=_segments(job, result),
                **_speakers(job, result),
            )
    elif not job.status.terminal:
        headers["Retry-After"] = str(POLL_SECONDS)
    return json_response(view, headers=headers)


@router.get(
    "/jobs/{job_id}/result",
    summary="A finished job's transcript in any format",
    response_model=None,
    responses={
        200: {"model": JobTranscript, "content": TEXT_FORMAT_CONTENT},
        **error_responses(401, 404, 409, 410, 501),
    },
)
async def get_job_result(
    jobs: JobsDep,
    client: ClientDep,
    job_id: str,
    response_format: Annotated[
        ResponseFormat | None, Query(description="Default: the job's response_format")
    ] = None,
) -> Response:
    """The transcript rendered like /transcribe would; 409 until the job succeeded."""
    job = await _owned_job(jobs, client, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise ServiceError(
            f"job {job_id} is {job.status.value}; a result exists only once it succeeded",
            code="job_not_succeeded",
            status=409,
            param="job_id",
            headers=None if job.status.terminal else {"Retry-After": str(POLL_SECONDS)},
        )
    result = await asyncio.to_thread(jobs.files.get_result, job.id)
    if result is None:
        raise ServiceError(
            f"the result of job {job_id} has expired", code="job_expired", status=410
        )
    fmt = response_format or job.options.response_format
    if fmt is not ResponseFormat.VERBOSE_JSON:
        body = JobTranscript(text=result.text, **_speakers(job, result))
    else:
        body = JobTranscript(
            text=result.text,
            task=job.options.task,
            language=result.language,
            duration=round(result.duration, 3),
            segments=_segments(job, result),
            **_speakers(job, result),
        )
    return render(result, fmt, body)


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a job",
    response_model=JobView,
    responses=error_responses(401, 404, 409, 501, 503),
)
async def cancel_job(
    request: Request, jobs: JobsDep, client: ClientDep, job_id: str
) -> JSONResponse:
    """200 with the job, now cancelled: no unit starts any more, and units running on
    any instance stop at their next window. 409 when it has already finished."""
    job = await _owned_job(jobs, client, job_id)
    if job.status.terminal:
        raise _already_finished(job)
    try:
        job = await jobs.cancel(job_id)
    except JobNotFound as exc:
        raise _job_not_found(job_id) from exc
    except StorageError as exc:
        raise _store_unavailable(exc.message) from exc
    if job.status is not JobStatus.CANCELLED:  # it finished first
        raise _already_finished(job)
    return json_response(job_view(request, job))


def _already_finished(job: Job) -> ServiceError:
    return ServiceError(
        f"job {job.id} already {job.status.value}", code="job_finished", status=409, param="job_id"
    )
