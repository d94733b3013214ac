"""Per response: the HTTP metrics by route template and one access log line."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_service.api.middleware.paths import is_probe
from whisper_service.api.middleware.request_id import header_value
from whisper_service.observability.redaction import redacted_url
from whisper_service.observability.telemetry import telemetry

access_log = structlog.get_logger("whisper_service.access")


class AccessMiddleware:
    """Per response: the HTTP metrics (route template, never the raw path) and one
    access log line carrying Cloud Logging's ``httpRequest`` object."""

    def __init__(self, app: ASGIApp, *, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size = 500, 0

        async def observing_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            route = self.route_of(scope)
            telemetry.request_finished(scope["method"], route, status, seconds)
            client = scope.get("client")
            fields = {
                "httpRequest": {
                    "requestMethod": scope["method"],
                    "requestUrl": redacted_url(scope),
                    "status": status,
                    "responseSize": str(size),
                    "latency": f"{seconds:.3f}s",
                    "userAgent": header_value(scope, b"user-agent") or "",
                    "remoteIp": client[0] if client else "",
                    "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                },
                "route": route,
            }
            if is_probe(scope["path"]) and status < 400:
                access_log.debug("request", **fields)
            else:
                access_log.info("request", **fields)
