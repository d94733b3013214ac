"""The upload size limit, counted as the body streams in: 413 from
``Content-Length`` before reading, or at the byte that passes the limit."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.request_id import header_value
from whisper_service.errors import ContentTooLarge

# Multipart framing and the small form fields ride on top of the file itself.
FORM_OVERHEAD_BYTES = 1024 * 1024


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
