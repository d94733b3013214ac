"""FastAPI dependencies: how a handler gets the process's runtime, a ready engine, the
jobs and the caller's identity. Tests may override any of them
(``app.dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from whisper_service.config import Settings
from whisper_service.engines import Engine
from whisper_service.errors import ServiceError
from whisper_service.jobs.service import Jobs
from whisper_service.serving.runtime import Runtime


def get_runtime(connection: HTTPConnection) -> Runtime:
    """The process's Runtime (created with the app), for a request or a WebSocket."""
    runtime: Runtime = connection.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings(runtime: RuntimeDep) -> Settings:
    """The process's settings."""
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ready_engine(runtime: RuntimeDep) -> Engine:
    """The loaded engine, or 503 while the model is still loading."""
    if runtime.engine is None:
        raise ServiceError(
            "the model is still loading",
            code="model_loading",
            status=503,
            headers={"Retry-After": "5"},
        )
    return runtime.engine


EngineDep = Annotated[Engine, Depends(get_ready_engine)]


def get_jobs(runtime: RuntimeDep) -> Jobs:
    """This process's jobs, or 501 when no job store is configured."""
    # Serving holds them as BackgroundJobs (it never imports jobs); app.py starts Jobs.
    if not isinstance(runtime.jobs, Jobs):
        raise ServiceError(
            "async jobs need a job store: set WHISPER_JOBS_STORE on the server",
            code="jobs_not_configured",
            status=501,
        )
    return runtime.jobs


JobsDep = Annotated[Jobs, Depends(get_jobs)]


def sees_internals(request: Request, runtime: RuntimeDep) -> bool:
    """Whether the caller may see other callers' requests and the service's internals:
    it presented an admin key, or the service has no keys at all (nobody to keep apart)."""
    if getattr(request.state, "admin", False):
        return True
    settings = runtime.settings
    return not (settings.auth_required or settings.all_api_keys())


InternalsDep = Annotated[bool, Depends(sees_internals)]


def get_client(request: Request) -> str | None:
    """The caller's key id when API keys are on (set by the auth middleware), else
    None: jobs are visible to their submitter only."""
    client: str | None = getattr(request.state, "client_id", None)
    return client


ClientDep = Annotated[str | None, Depends(get_client)]
