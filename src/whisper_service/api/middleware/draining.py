"""Requests in flight, tracked; and while the process drains, new work refused with
503 and every connection closed after its current response."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.paths import is_probe
from whisper_service.errors import ServiceError
from whisper_service.observability import metrics
from whisper_service.observability.context import request_id_var
from whisper_service.serving.inflight import InFlightTracker


class DrainMiddleware:
    """While the process drains: refuse new work with 503, Retry-After and
    Connection: close, and close every connection after its current response, so
    clients reconnect to another instance."""

    def __init__(self, app: ASGIApp, *, is_draining: Callable[[], bool]) -> None:
        self.app = app
        self.is_draining = is_draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_draining():
            await self.app(scope, receive, send)
            return
        if not is_probe(scope["path"]):
            await send_error(
                send,
                ServiceError(
                    "the instance is shutting down; retry on another",
                    code="shutting_down",
                    status=503,
                    headers={"Retry-After": "1", "Connection": "close"},
                ),
            )
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"],
                    (b"connection", b"close"),
                ]
            await send(message)

        await self.app(scope, receive, send_closing)


class InFlightMiddleware:
    """Track every request (id, start, path) while it is served."""

    def __init__(self, app: ASGIApp, *, tracker: InFlightTracker) -> None:
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_probe(scope["path"]):
            await self.app(scope, receive, send)
            return
        request_id = request_id_var.get() or uuid.uuid4().hex
        self.tracker.add(request_id, scope["method"], scope["path"])
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.IN_FLIGHT.dec()
            self.tracker.remove(request_id)


access_log = structlog.get_logger("whisper_service.access")
