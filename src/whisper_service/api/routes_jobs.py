"""Async jobs over HTTP: POST /jobs, GET /jobs, GET /jobs/{id}, GET /jobs/{id}/result,
DELETE /jobs/{id}.

Everything that can be checked about a job without transcribing it is checked here,
before answering 202: options, the gs:// object (allow-list, existence, size from its
metadata), that an upload is audio at all. What only decoding can tell (corrupt data
half-way, audio too long) ends the job failed with the reason.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from whisper_service.api.errors import ApiError
from whisper_service.api.inference import ready_engine, runtime_of
from whisper_service.api.routes_transcribe import (
    MAX_PROMPT_CHARS,
    check_engine_options,
    check_source,
    parse_language,
    render,
)
from whisper_service.api.uploads import check_gcs_input, probe_upload
from whisper_service.engines.base import Task, Transcription
from whisper_service.formats import ResponseFormat, segment_dict
from whisper_service.jobs.records import Job, JobOptions, JobSource, JobStatus, new_job_id
from whisper_service.jobs.runner import JobRunner
from whisper_service.jobs.store import JobNotFound
from whisper_service.observability.context import request_id_var
from whisper_service.storage import StorageError

router = APIRouter(tags=["jobs"])

# How often a client should poll a job that is not finished, in seconds.
POLL_SECONDS = 2


def runner_of(request: Request) -> JobRunner:
    """This instance's job runner, or 501 when no job store is configured."""
    runner = runtime_of(request).jobs
    if runner is None:
        raise ApiError(
            501,
            "jobs_not_configured",
            "async jobs need a job store: set WHISPER_JOBS_STORE on the server",
        )
    return runner


def client_of(request: Request) -> str | None:
    """The caller's key id when API keys are on: jobs are visible to their submitter only."""
    client: str | None = getattr(request.state, "client_id", None)
    return client


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def job_view(request: Request, job: Job) -> dict[str, Any]:
    """A job as the API shows it (never the lease or the submitter's key id)."""
    base = str(request.base_url).rstrip("/")
    view: dict[str, Any] = {
        "id": job.id,
        "object": "transcription.job",
        "status": job.status.value,
        "status_url": f"{base}/jobs/{job.id}",
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "progress": {**job.progress.model_dump(), "percent": job.progress.percent},
        "source": job.source.model_dump(exclude_none=True),
        "options": job.options.model_dump(mode="json"),
        "language": job.language,
        "cancel_requested": job.cancel_requested,
        "attempts": job.attempts,
        "interruptions": job.interruptions,
        "error": job.error.model_dump() if job.error else None,
    }
    if job.status is JobStatus.SUCCEEDED:
        view["result_url"] = f"{base}/jobs/{job.id}/result"
        if job.output_uri:
            view["output_uri"] = job.output_uri
    return view


def _segments(job: Job, result: Transcription) -> list[dict[str, Any]]:
    return [segment_dict(s, with_words=job.options.word_timestamps) for s in result.segments]


async def _owned_job(request: Request, runner: JobRunner, job_id: str) -> Job:
    job = await asyncio.to_thread(runner.store.get, job_id)
    if job is None or job.client != client_of(request):
        # Someone else's job is reported exactly like a missing one.
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", param="job_id")
    return job


@router.post(
    "/jobs",
    status_code=202,
    summary="Start an async transcription (long audio)",
    responses={
        400: {"description": "invalid parameter"},
        404: {"description": "gs:// object not found"},
        413: {"description": "file too large"},
        415: {"description": "not audio"},
        429: {"description": "this instance holds as many jobs as it may"},
        501: {"description": "no job store configured"},
    },
)
async def create_job(
    request: Request,
    file: Annotated[UploadFile | None, File(description="Audio or video file")] = None,
    gcs_uri: Annotated[str | None, Form(description="gs://bucket/object instead of a file")] = None,
    save_to_gcs: Annotated[
        bool, Form(description="Also write the transcript to WHISPER_GCS_OUTPUT_URI/<id>")
    ] = False,
    language: Annotated[str | None, Form(description="ISO 639-1 code; detected if empty")] = None,
    task: Annotated[Task, Form()] = "transcribe",
    response_format: Annotated[
        ResponseFormat, Form(description="Format of /jobs/{id}/result and of the GCS output")
    ] = ResponseFormat.JSON,
    word_timestamps: Annotated[bool, Form()] = False,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    beam_size: Annotated[int | None, Form(ge=1, le=16)] = None,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    vad_filter: Annotated[
        bool, Form(description="Cut at pauses and skip silence (always so with vad chunking)")
    ] = False,
) -> JSONResponse:
    """Accept a job: 202 with its id and ``status_url`` (also in ``Location``)."""
    runner = runner_of(request)
    runtime = runtime_of(request)
    engine = ready_engine(request)
    check_source(runtime.settings, file, gcs_uri, save_to_gcs)
    options = JobOptions(
        language=parse_language(language),
        task=task,
        response_format=response_format,
        word_timestamps=word_timestamps,
        temperature=temperature,
        beam_size=beam_size or runtime.settings.default_beam_size,
        prompt=prompt or None,
        vad_filter=vad_filter,
        save_to_gcs=save_to_gcs,
    )
    check_engine_options(engine, options.transcribe_options())
    if runner.full:
        raise ApiError(
            429,
            "jobs_full",
            f"this instance holds {runtime.settings.jobs_max_active} jobs, its limit; retry later",
            headers={"Retry-After": "30"},
        )
    upload: IO[bytes] | None = None
    if file is not None:
        await probe_upload(file, runtime.settings)
        upload = file.file
        source = JobSource(kind="upload", filename=file.filename, bytes=file.size)
    else:
        uri = await check_gcs_input(str(gcs_uri), runtime.storage, runtime.settings)
        source = JobSource(kind="gcs", uri=uri)
    job = Job(
        id=new_job_id(),
        client=client_of(request),
        request_id=request_id_var.get(),
        source=source,
        options=options,
    )
    try:
        job = await runner.submit(job, upload)
    except StorageError as exc:
        raise ApiError(503, "job_store_unavailable", exc.message) from exc
    except OSError as exc:  # a directory store: disk full, permissions changed
        raise ApiError(
            503, "job_store_unavailable", f"the job store cannot take the job: {exc.strerror}"
        ) from exc
    view = job_view(request, job)
    return JSONResponse(view, status_code=202, headers={"Location": view["status_url"]})


@router.get("/jobs", summary="List recent jobs (newest first)")
async def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state")] = None,
) -> dict[str, Any]:
    """The caller's most recent jobs."""
    runner = runner_of(request)
    client = client_of(request)

    def recent() -> list[Job]:
        found: list[Job] = []
        for job_id in reversed(runner.store.ids()):
            job = runner.store.get(job_id)
            if job is None or job.client != client:
                continue
            if status is None or job.status is status:
                found.append(job)
                if len(found) == limit:
                    break
        return found

    jobs = await asyncio.to_thread(recent)
    return {"object": "list", "data": [job_view(request, j) for j in jobs]}


@router.get("/jobs/{job_id}", summary="A job's status, progress and (when done) result")
async def get_job(request: Request, job_id: str) -> JSONResponse:
    """The job; a finished one carries its transcript inline (``result``)."""
    runner = runner_of(request)
    job = await _owned_job(request, runner, job_id)
    view = job_view(request, job)
    headers = {}
    if job.status is JobStatus.SUCCEEDED:
        result = await asyncio.to_thread(runner.store.read_result, job.id)
        if result is not None:
            view["result"] = {
                "text": result.text,
                "language": result.language,
                "language_probability": round(result.language_probability, 4),
                "duration": round(result.duration, 3),
                "segments": _segments(job, result),
            }
    elif not job.status.terminal:
        headers["Retry-After"] = str(POLL_SECONDS)
    return JSONResponse(view, headers=headers)


@router.get("/jobs/{job_id}/result", summary="A finished job's transcript in any format")
async def get_job_result(
    request: Request,
    job_id: str,
    response_format: Annotated[
        ResponseFormat | None, Query(description="Default: the job's response_format")
    ] = None,
) -> Response:
    """The transcript rendered like /transcribe would; 409 until the job succeeded."""
    runner = runner_of(request)
    job = await _owned_job(request, runner, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise ApiError(
            409,
            "job_not_succeeded",
            f"job {job_id} is {job.status.value}; a result exists only once it succeeded",
            param="job_id",
            headers=None if job.status.terminal else {"Retry-After": str(POLL_SECONDS)},
        )
    result = await asyncio.to_thread(runner.store.read_result, job.id)
    if result is None:
        raise ApiError(410, "job_expired", f"the result of job {job_id} has expired")
    fmt = response_format or job.options.response_format
    body: dict[str, Any] = {"text": result.text}
    if fmt is ResponseFormat.VERBOSE_JSON:
        body.update(
            task=job.options.task,
            language=result.language,
            duration=round(result.duration, 3),
            segments=_segments(job, result),
        )
    return render(result, fmt, body)


@router.delete("/jobs/{job_id}", summary="Cancel a job")
async def cancel_job(request: Request, job_id: str) -> JSONResponse:
    """200 with the cancelled job when it was queued; 202 when it is running and will
    stop at its next check; 409 when it has already finished."""
    runner = runner_of(request)
    job = await _owned_job(request, runner, job_id)
    if job.status.terminal:
        raise ApiError(
            409, "job_finished", f"job {job_id} already {job.status.value}", param="job_id"
        )
    started = time.monotonic()
    try:
        job = await runner.cancel(job_id)
        # A job running here stops within a decoder step or a batch: wait briefly so
        # the answer is usually final.
        while not job.status.terminal and time.monotonic() - started < 2.0:
            await asyncio.sleep(0.1)
            latest = await asyncio.to_thread(runner.store.get, job_id)
            job = latest or job
    except JobNotFound as exc:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", param="job_id") from exc
    except StorageError as exc:
        raise ApiError(503, "job_store_unavailable", exc.message) from exc
    return JSONResponse(job_view(request, job), status_code=200 if job.status.terminal else 202)
