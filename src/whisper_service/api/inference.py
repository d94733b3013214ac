"""Run engine work through the scheduler and map refusals to HTTP errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request

from whisper_service.api.errors import ApiError
from whisper_service.engines.base import Cancelled, CancelToken, Engine, UnsupportedOption
from whisper_service.lifecycle import Runtime
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry
from whisper_service.scheduler import Rejected

T = TypeVar("T")

_REJECTIONS = {
    "queue_full": (429, "the inference queue is full; retry later"),
    "queue_timeout": (503, "no inference worker became free in time; retry later"),
    "shutting_down": (
        503,
        "the instance is shutting down and could not finish this request in time; retry",
    ),
    "deadline_exceeded": (504, "the request deadline passed before inference finished"),
    "client_disconnected": (499, "the client disconnected"),
    "cancelled": (503, "the request was cancelled; retry later"),
}


def runtime_of(request: Request) -> Runtime:
    """The process Runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def ready_engine(request: Request) -> Engine:
    """The loaded engine, or 503 while the model is still loading."""
    engine = runtime_of(request).engine
    if engine is None:
        raise ApiError(
            503, "model_loading", "the model is still loading", headers={"Retry-After": "5"}
        )
    return engine


def deadline_token(request: Request) -> CancelToken:
    """A cancel token whose deadline is the request timeout from now; the drain can
    cancel it too."""
    runtime = runtime_of(request)
    token = CancelToken(deadline=time.monotonic() + runtime.settings.request_timeout_seconds)
    runtime.in_flight.attach_token(request_id_var.get(), token)
    return token


def admit_or_reject(request: Request) -> None:
    """Refuse at once, before spending CPU on decoding, when the queue is full or the
    container is short of memory (new work would risk an OOM kill)."""
    runtime = runtime_of(request)
    scheduler = runtime.scheduler
    if runtime.monitor is not None and runtime.monitor.memory_critical:
        memory = runtime.monitor.checks["memory"]
        raise ApiError(
            503,
            "memory_pressure",
            f"the instance is short of memory ({memory.message}); retry later",
            headers={"Retry-After": "5"},
        )
    if scheduler.full:
        raise rejection_error(Rejected("queue_full", scheduler.retry_after()))


def rejection_error(rejected: Rejected) -> ApiError:
    """The HTTP error for a request the scheduler did not (or could not finish to) run."""
    status, message = _REJECTIONS[rejected.reason]
    headers = {"Retry-After": str(int(rejected.retry_after))} if status in (429, 503) else None
    return ApiError(status, rejected.reason, message, headers=headers)


async def run_inference(
    request: Request,
    token: CancelToken,
    work: Callable[[CancelToken], T],
    *,
    task: str,
    audio_seconds: float,
) -> T:
    """Run ``work`` on an inference worker (traced and measured), translating scheduler
    and engine outcomes into HTTP errors."""
    runtime = runtime_of(request)
    scheduler = runtime.scheduler
    settings = runtime.settings
    engine, model = settings.engine.value, settings.model

    def measured(t: CancelToken) -> T:
        with telemetry.inference(engine, model, task, audio_seconds) as span:
            output = work(t)
            language = getattr(output, "language", None)
            if language:
                span.set_attribute("whisper.language", language)
        return output

    try:
        result = await scheduler.run(measured, token, request.is_disconnected)
    except Rejected as rejected:
        raise rejection_error(rejected) from rejected
    except Cancelled as cancelled:
        raise rejection_error(Rejected(cancelled.reason, scheduler.retry_after())) from cancelled
    except UnsupportedOption as exc:
        raise ApiError(400, "unsupported_option", exc.message, param=exc.param) from exc
    runtime.inference_succeeded()
    return result
