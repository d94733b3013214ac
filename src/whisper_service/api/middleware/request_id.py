"""Request ids: the server's own for every request, on its log lines, spans and
errors, and the caller's sane ``X-Request-ID`` kept as the caller's."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_service.observability.context import request_id_var

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
