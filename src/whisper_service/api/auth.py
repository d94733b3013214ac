"""Optional API-key authentication, checked before the body is read.

Keys arrive as ``Authorization: Bearer <key>`` (what the openai SDK sends) or
``X-API-Key: <key>``. They are compared in constant time: both sides are hashed to a
fixed length first, and every configured key is compared, so neither a key's length
nor which key matched shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_service.api.middleware import is_probe, send_error
from whisper_service.errors import ServiceError

REALM = "whisper-service"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def client_key_id(key: str) -> str:
    """A stable, non-secret name for a key: for rate limiting and logs."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def presented_key(scope: Scope) -> str | None:
    """The key the request carries, if any. ``X-API-Key`` wins over ``Authorization``:
    behind Cloud Run's IAM, Authorization carries the platform's ID token."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    bearer = None
    for name, raw in headers:
        lowered, value = name.lower(), raw.decode("latin-1").strip()
        if lowered == b"x-api-key" and value:
            return value
        if lowered == b"authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


class ApiKeyMiddleware:
    """401 with ``WWW-Authenticate`` unless the request carries a configured key.
    Probes (health, metrics) are open when ``public_probes`` is set."""

    def __init__(self, app: ASGIApp, *, keys: list[str], public_probes: bool) -> None:
        self.app = app
        self._digests = [_digest(k) for k in keys]
        self.public_probes = public_probes

    def _valid(self, key: str) -> bool:
        given = _digest(key)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, given)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self.public_probes and is_probe(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None or not self._valid(key):
            challenge = f'Bearer realm="{REALM}"'
            message = "a valid API key is required (Authorization: Bearer <key> or X-API-Key)"
            if key is not None:
                challenge += ', error="invalid_token"'
                message = "the API key is not valid"
            await send_error(
                send,
                ServiceError(
                    message,
                    code="invalid_api_key" if key is not None else "missing_api_key",
                    status=401,
                    headers={"WWW-Authenticate": challenge},
                ),
            )
            return
        scope.setdefault("state", {})["client_id"] = client_key_id(key)
        await self.app(scope, receive, send)
