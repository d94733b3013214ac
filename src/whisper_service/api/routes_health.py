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
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from whisper_service import __version__
from whisper_service.api.errors import error_response
from whisper_service.api.inference import runtime_of
from whisper_service.health import Status
from whisper_service.lifecycle import Runtime

router = APIRouter(tags=["health"])


def _queue(runtime: Runtime) -> dict[str, int]:
    stats = runtime.scheduler.stats
    return {
        "workers": stats.workers,
        "running": stats.running,
        "waiting": stats.waiting,
        "capacity": stats.queue_size,
    }


def _readiness(runtime: Runtime) -> tuple[bool, str]:
    if runtime.draining:
        return False, "draining"
    if runtime.engine is None:
        return False, "loading"
    if runtime.scheduler.full:
        return False, "overloaded"
    return True, "ready"


@router.get("/health/live", summary="Liveness: the process answers")
@router.get("/v2/health/live", include_in_schema=False)
async def live() -> dict[str, str]:
    """Always 200 while the event loop runs."""
    return {"status": "alive"}


@router.get("/health/startup", summary="Startup: the model is loaded")
async def startup(request: Request) -> JSONResponse:
    """200 once the model is loaded and warmed up, else 503."""
    runtime = runtime_of(request)
    if runtime.engine is None:
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "started", "load_seconds": runtime.load_seconds})


@router.get("/health/ready", summary="Readiness: should this instance get traffic")
@router.get("/v2/health/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    """200 when ready, else 503 with the reason (loading, draining, overloaded)."""
    runtime = runtime_of(request)
    is_ready, status = _readiness(runtime)
    body = {"status": status, "model_loaded": runtime.engine is not None, "queue": _queue(runtime)}
    if is_ready:
        return JSONResponse(body)
    return JSONResponse(body, 503, headers={"Retry-After": "1" if runtime.draining else "5"})


@router.get("/v2/models/{name}/ready", summary="KServe v2 model readiness")
async def model_ready(request: Request, name: str) -> JSONResponse:
    """200 when ``name`` is the served model and the instance is ready."""
    runtime = runtime_of(request)
    served = runtime.artifact.name if runtime.artifact else runtime.settings.model
    if name not in (served, "whisper-1"):
        return error_response(404, "model_not_found", "this instance does not serve that model")
    is_ready, status = _readiness(runtime)
    return JSONResponse(
        {"name": name, "ready": is_ready, "status": status}, 200 if is_ready else 503
    )


@router.get("/health", summary="Full health report")
async def health(request: Request) -> JSONResponse:
    """Every check with value, threshold, message and trend, plus the process state.
    200 when healthy or degraded, 503 when unhealthy."""
    runtime = runtime_of(request)
    monitor = runtime.monitor
    report: dict[str, Any] = monitor.report() if monitor else {"status": "unhealthy", "checks": {}}
    settings = runtime.settings
    in_flight = runtime.in_flight.snapshot()
    report.update(
        {
            "version": __version__,
            "pid": os.getpid(),
            "engine": settings.engine.value,
            "model": runtime.artifact.name if runtime.artifact else settings.model,
            "model_loaded": runtime.engine is not None,
            "uptime_seconds": round(time.monotonic() - runtime.started_monotonic, 3),
            "started_at": runtime.started_at,
            "draining": runtime.draining,
            "in_flight_count": len(in_flight),
            "in_flight": [r.as_dict() for r in in_flight],
            "queue": _queue(runtime),
            "jobs": None if runtime.jobs is None else runtime.jobs.stats(),
        }
    )
    healthy = monitor is not None and monitor.status is not Status.UNHEALTHY
    return JSONResponse(report, 200 if healthy else 503)
