"""Probes. ``live``: the process and its event loop answer, whatever the model does.
``ready``: the model is loaded and the queue has room. The full health report
arrives with the health monitor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from whisper_service.api.inference import runtime_of

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    """Always 200 while the event loop runs."""
    return {"status": "alive"}


@router.get("/ready", summary="Readiness: model loaded and capacity left")
async def ready(request: Request) -> JSONResponse:
    """200 when this instance should receive traffic, else 503 with the reason."""
    runtime = runtime_of(request)
    stats = runtime.scheduler.stats
    body: dict[str, Any] = {
        "model_loaded": runtime.engine is not None,
        "queue": {"running": stats.running, "waiting": stats.waiting, "capacity": stats.queue_size},
    }
    if runtime.engine is None:
        return JSONResponse({"status": "loading", **body}, 503, headers={"Retry-After": "5"})
    if runtime.scheduler.full:
        return JSONResponse({"status": "overloaded", **body}, 503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", **body})
