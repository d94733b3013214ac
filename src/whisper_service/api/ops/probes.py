"""Health endpoints. Cloud Run's probes pass on 200-399 and it reserves paths ending
in ``z``, hence ``/health/...``.

* ``/health/live``: the process and its event loop answer; never the model.
* ``/health/startup``: the model is loaded (for a startup probe).
* ``/health/ready``: model loaded, not draining, queue not full.
* ``/health``: the full report; 200 when healthy or degraded, 503 when unhealthy.
* KServe v2 aliases: ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}/ready``.
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from whisper_service import __version__
from whisper_service.api.deps import InternalsDep, RuntimeDep
from whisper_service.api.ops.schemas import (
    HealthReport,
    InFlightOut,
    Live,
    ModelReadiness,
    QueueState,
    Readiness,
    ReadyStatus,
    Startup,
)
from whisper_service.api.schemas import error_responses, json_response
from whisper_service.errors import ServiceError
from whisper_service.serving.health import Status
from whisper_service.serving.runtime import Runtime

router = APIRouter(tags=["health"])


def _queue(runtime: Runtime) -> QueueState:
    stats = runtime.scheduler.stats
    return QueueState(
        workers=stats.workers,
        batch_size=stats.batch_size,
        running=stats.running,
        waiting=stats.waiting,
        decoding=stats.admitted,
        capacity=stats.queue_size,
    )


def _readiness(runtime: Runtime) -> tuple[bool, ReadyStatus]:
    if runtime.draining:
        return False, "draining"
    if runtime.engine is None:
        return False, "loading"
    if runtime.scheduler.full:
        return False, "overloaded"
    return True, "ready"


@router.get("/health/live", summary="Liveness: the process answers")
@router.get("/v2/health/live", include_in_schema=False)
async def live() -> Live:
    """Always 200 while the event loop runs."""
    return Live()


@router.get(
    "/health/startup",
    summary="Startup: the model is loaded",
    response_model=Startup,
    responses={503: {"model": Startup, "description": "still loading"}},
)
async def startup(runtime: RuntimeDep) -> JSONResponse:
    """200 once the model is loaded and warmed up, else 503."""
    if runtime.engine is None:
        return json_response(Startup(status="loading"), 503, headers={"Retry-After": "5"})
    return json_response(Startup(status="started", load_seconds=runtime.load_seconds))


@router.get(
    "/health/ready",
    summary="Readiness: should this instance get traffic",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "loading, draining or overloaded"}},
)
@router.get("/v2/health/ready", include_in_schema=False)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """200 when ready, else 503 with the reason (loading, draining, overloaded)."""
    is_ready, status = _readiness(runtime)
    body = Readiness(status=status, model_loaded=runtime.engine is not None, queue=_queue(runtime))
    if is_ready:
        return json_response(body)
    return json_response(body, 503, headers={"Retry-After": "1" if runtime.draining else "5"})


@router.get(
    "/v2/models/{name}/ready",
    summary="KServe v2 model readiness",
    response_model=ModelReadiness,
    responses={
        503: {"model": ModelReadiness, "description": "not ready"},
        **error_responses(404),
    },
)
async def model_ready(runtime: RuntimeDep, name: str) -> JSONResponse:
    """200 when ``name`` is the served model and the instance is ready."""
    if name not in runtime.served_model_ids():
        raise ServiceError(
            "this instance does not serve that model", code="model_not_found", status=404
        )
    is_ready, status = _readiness(runtime)
    body = ModelReadiness(name=name, ready=is_ready, status=status)
    return json_response(body, 200 if is_ready else 503)


@router.get(
    "/health",
    summary="Full health report",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "unhealthy"}},
)
async def health(runtime: RuntimeDep, internals: InternalsDep) -> JSONResponse:
    """Every check with value, threshold, message and trend, plus the process state.
    200 when healthy or degraded, 503 when unhealthy. Other callers' requests (ids,
    paths), the process id and the job store's location only with an admin key."""
    monitor = runtime.monitor
    checks = monitor.report() if monitor else {
        "status": "unhealthy", "sampled_at": None, "window_seconds": 0.0, "checks": {}
    }  # fmt: skip
    in_flight = runtime.in_flight.snapshot()
    jobs = None if runtime.jobs is None else runtime.jobs.stats()
    if jobs is not None and not internals:
        jobs = {k: v for k, v in jobs.items() if k not in ("store", "instance")}
    report = HealthReport(
        **checks,
        version=__version__,
        pid=os.getpid() if internals else None,
        engine=runtime.settings.engine.value,
        model=runtime.model_name,
        model_loaded=runtime.engine is not None,
        uptime_seconds=round(time.monotonic() - runtime.started_monotonic, 3),
        started_at=runtime.started_at,
        draining=runtime.draining,
        in_flight_count=len(in_flight),
        in_flight=[InFlightOut(**r.as_dict()) for r in in_flight] if internals else None,
        queue=_queue(runtime),
        jobs=jobs,
    )
    healthy = monitor is not None and monitor.status is not Status.UNHEALTHY
    return json_response(report, 200 if healthy else 503)
