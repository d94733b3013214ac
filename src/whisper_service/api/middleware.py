"""ASGI middleware: request ids and the upload size limit.

Both are plain ASGI (not BaseHTTPMiddleware) so they stream: the size limit counts
body bytes as they arrive and stops the upload at the limit instead of after it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_service.api.error_responses import error_body
from whisper_service.api.paths import is_probe
from whisper_service.errors import ContentTooLarge, ServiceError
from whisper_service.observability import metrics
from whisper_service.observability.context import request_id_var
from whisper_service.observability.redaction import redacted_url
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.inflight import InFlightTracker

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Multipart framing and the small form fields ride on top of the file itself.
FORM_OVERHEAD_BYTES = 1024 * 1024


def header_value(scope: Scope, name: bytes) -> str | None:
    """The value of the request header ``name`` (lower-case bytes), if sent."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Give every request an id of the server's own (``request_id``: the one that
    tracks it in flight, names what it stores, and is on its log lines and errors) and
    keep the caller's sane ``X-Request-ID`` as the caller's alone
    (``caller_request_id``): echoed on the response and logged, never used as a key,
    so one caller's id cannot collide with, or name, another's work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header_value(scope, REQUEST_ID_HEADER.encode())
        caller = given if given and _VALID_ID.match(given) else None
        request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        fields = {"request_id": request_id}
        if caller:
            fields["caller_request_id"] = caller
        structlog.contextvars.bind_contextvars(**fields)
        echoed = (caller or request_id).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", echoed))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars(*fields)
            request_id_var.reset(token)


# Both bases keep response headers; ServiceError's (a dict) is the one used.
class UploadTooLarge(ContentTooLarge, StarletteHTTPException):  # type: ignore[misc]
    """The body grew past the limit while FastAPI was reading it. FastAPI lets only an
    HTTPException out of body parsing (anything else becomes a generic 400), hence the
    second base; the handler that answers it is the ServiceError one."""

    def __init__(self, limit: int, size: int, how: str = "read") -> None:
        ContentTooLarge.__init__(self, limit, size, how)
        self.status_code, self.detail = self.status, self.message


class BodySizeLimitMiddleware:
    """413 before reading when Content-Length is over the limit; otherwise count the
    streamed body and fail as soon as it passes the limit. ``max_bytes`` is the limit
    callers are told (an upload's file); ``overhead`` is allowed on top of it (the
    form's framing)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overhead: int = 0) -> None:
        self.app = app
        self.shown = max_bytes
        self.max_bytes = max_bytes + overhead

    def _too_large(self, size: int, how: str = "read") -> UploadTooLarge:
        return UploadTooLarge(self.shown, size, how)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header_value(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large(int(declared), "declared")
            # Close: the client may still be sending the body we will never read.
            error.headers["Connection"] = "close"
            await send_error(send, error)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(received)
            return message

        await self.app(scope, limited_receive, send)


async def send_error(send: Send, error: ServiceError, scope: Scope | None = None) -> None:
    """Answer from middleware (before any route runs) in the API's JSON error shape,
    counted as a rejection (``send_error_response``)."""
    telemetry.rejected(error.code)
    await send_error_response(send, error, scope)


async def send_error_response(send: Send, error: ServiceError, scope: Scope | None = None) -> None:
    """``error`` in the API's JSON error shape. A WebSocket handshake is refused with
    that HTTP answer where the server can send one (the ASGI ``websocket.http.response``
    extension), else closed unaccepted (403)."""
    body = json.dumps(error_body(error.status, error.code, error.message, error.param)).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    status = error.status
    prefix = "http"
    if scope is not None and scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": error.code})
            return
        prefix = "websocket.http"
    await send({"type": f"{prefix}.response.start", "status": status, "headers": raw_headers})
    await send({"type": f"{prefix}.response.body", "body": body})


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
