"""WebSocket handshakes from other sites' pages, refused.

Browsers apply no same-origin rule to WebSockets: any page a person visits may open
``ws://127.0.0.1:8080/stream`` and stream into a service that runs on their machine
(with keys off, in development, nothing else stops it), or into one their network
reaches. Browsers do say which page asks, in ``Origin``; a handshake whose origin is
neither the service's own nor in the CORS allow-list (``WHISPER_CORS_ORIGINS``) gets
403 before the upgrade. Clients that are not browsers send no ``Origin`` and are not
affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.request_id import header_value
from whisper_service.errors import ServiceError


class WebSocketOriginMiddleware:
    """403 ``origin_not_allowed`` for a WebSocket handshake from another origin's page."""

    def __init__(self, app: ASGIApp, *, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    def permits(self, scope: Scope) -> bool:
        """Whether the handshake's page (if any) may open a session here."""
        origin = header_value(scope, b"origin")
        if origin is None or self.any:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed:
            return True
        host = header_value(scope, b"host")  # the page's own origin: the service's page
        return host is not None and urlsplit(origin).netloc == host.strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.permits(scope):
            error = ServiceError(
                "this page's origin may not open a session here: add it to "
                "WHISPER_CORS_ORIGINS on the server",
                code="origin_not_allowed",
                status=403,
            )
            await send_error(send, error, scope)
            return
        await self.app(scope, receive, send)
