"""Where a Pub/Sub push is authenticated: in the ASGI layer, before its body is read.

FastAPI reads and parses a route's JSON body before it resolves the route's
dependencies, so a check there would let anyone make the process read, and hold,
whatever an upload may be (a JSON body of nested empty lists grows about 25-fold as
Python objects). Here the credentials of every request to ``/internal/jobs/`` are
checked from its headers and query alone (``jobs.push_auth``); a refusal is answered
at once with ``Connection: close``, nothing of the body read. Failed credentials are
limited per address as failed API keys are. What passes may send at most
``PUSH_MAX_BODY_BYTES``: a push of one of this service's deliveries is a few hundred
bytes (Pub/Sub's own limit, 10 MB a message, is far above anything it publishes).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.body_limit import BodySizeLimitMiddleware
from whisper_service.api.middleware.paths import is_push
from whisper_service.api.middleware.rate_limit import (
    client_address,
    failure_limiter,
    too_many_failures,
)
from whisper_service.errors import ServiceError
from whisper_service.jobs.push_auth import PushAuth, PushRefused

# A delivery's envelope (message id, attributes, subscription name, base64 data of a
# job id and a unit number) is well under 2 KiB.
PUSH_MAX_BODY_BYTES = 64 * 1024


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The Authorization header and the ``token`` query parameter, if any."""
    authorization = None
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            authorization = value.decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("token")
    return authorization, tokens[-1] if tokens else None


class PushGuardMiddleware:
    """Only each route's push subscription reaches ``/internal/jobs/*``, and only with
    a body of at most PUSH_MAX_BODY_BYTES."""

    def __init__(self, app: ASGIApp, *, auth: PushAuth, failures_per_minute: float) -> None:
        self.app = app
        self.limited = BodySizeLimitMiddleware(app, max_bytes=PUSH_MAX_BODY_BYTES)
        self.auth = auth
        self._failures = failure_limiter(failures_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_push(scope["path"]):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        failures = self._failures
        if failures is not None and failures.exhausted(address, time.monotonic()):
            await send_error(send, _closing(too_many_failures(failures.retry_after(address))))
            return
        authorization, token = _credentials(scope)
        try:
            # Off the event loop: a token's verification may fetch Google's certificates.
            await asyncio.to_thread(self.auth.check, authorization, token, scope["path"])
        except PushRefused as refused:
            if failures is not None:
                failures.take(address, time.monotonic())
            await send_error(send, _closing(refused))
            return
        except ServiceError as unverifiable:  # certificates unavailable: Pub/Sub retries
            await send_error(send, _closing(unverifiable))
            return
        await self.limited(scope, receive, send)


def _closing(error: ServiceError) -> ServiceError:
    """``error`` with ``Connection: close``: the client may still be sending a body
    that will never be read."""
    error.headers["Connection"] = "close"
    return error
