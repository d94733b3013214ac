"""Optional API-key authentication, checked before the body is read.

Keys arrive as ``Authorization: Bearer <key>`` (what the openai SDK sends) or
``X-API-Key: <key>``. They are compared in constant time: both sides are hashed to a
fixed length first, and every configured key is compared, so neither a key's length
nor which key matched shows in the timing.

A valid key names its caller by a key id (an HMAC of the key, so logs and job records
never hold anything that could be turned back into the key or guessed offline) and
says whether it is an admin key (admins see internals in /health and /metrics).
Failed attempts are limited per address: past ``auth_failures_per_minute`` an address
gets 429 whatever it sends, so keys cannot be guessed at the service's speed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.paths import is_page, is_probe, is_push
from whisper_service.api.middleware.rate_limit import (
    client_address,
    failure_limiter,
    too_many_failures,
)
from whisper_service.errors import ServiceError

REALM = "whisper-service"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyIds:
    """Key ids: ``key:`` and 12 hex digits of HMAC-SHA256(secret, key). The secret is
    WHISPER_KEY_ID_SECRET, or, unset, derived from the configured keys themselves."""

    def __init__(self, secret: str | None, keys: list[str]) -> None:
        material = secret if secret else "\n".join(sorted(keys))
        self._secret = hashlib.sha256(("key-id:" + material).encode()).digest()

    def of(self, key: str) -> str:
        """The id of ``key``."""
        return "key:" + hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:12]


# OpenAI's way for a browser WebSocket to carry a key: a subprotocol.
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def presented_key(scope: Scope) -> str | None:
    """The key the request carries, if any. ``X-API-Key`` wins over ``Authorization``:
    behind Cloud Run's IAM, Authorization carries the platform's ID token. A WebSocket
    may carry it as the subprotocol ``openai-insecure-api-key.<key>``."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    bearer = None
    for subprotocol in scope.get("subprotocols", []) if scope.get("type") == "websocket" else []:
        if subprotocol.startswith(KEY_SUBPROTOCOL) and len(subprotocol) > len(KEY_SUBPROTOCOL):
            bearer = subprotocol[len(KEY_SUBPROTOCOL) :]
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
    Probes (health) are open when ``public_probes`` is set; a valid key on them still
    names its caller (and an admin). Sets ``state.client_id`` and ``state.admin``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: list[str],
        admin_keys: list[str],
        key_ids: KeyIds,
        public_probes: bool,
        failures_per_minute: float,
        push_exempt: bool = False,
    ) -> None:
        self.app = app
        self._digests = [_digest(k) for k in keys]
        self._admin_digests = [_digest(k) for k in admin_keys]
        self._key_ids = key_ids
        self.public_probes = public_probes
        self.push_exempt = push_exempt
        self._failures = failure_limiter(failures_per_minute)

    @staticmethod
    def _matches(given: bytes, digests: list[bytes]) -> bool:
        matched = False
        for digest in digests:
            matched |= hmac.compare_digest(digest, given)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (kind == "http" and scope["method"] == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # Pushes carry the subscription's credentials, checked by the push guard; the
        # page's files hold no secret (its user types the key).
        path = scope["path"]
        public = (
            (self.public_probes and is_probe(path))
            or (self.push_exempt and is_push(path))
            or (kind == "http" and is_page(path))
        )
        address = client_address(scope)
        held_off = self._failures is not None and self._failures.exhausted(
            address, time.monotonic()
        )
        if held_off and not public:
            assert self._failures is not None
            await send_error(send, too_many_failures(self._failures.retry_after(address)), scope)
            return
        key = presented_key(scope)
        given = None if key is None else _digest(key)
        state = scope.setdefault("state", {})
        if key is not None and given is not None and self._matches(given, self._digests):
            state["client_id"] = self._key_ids.of(key)
            state["admin"] = self._matches(given, self._admin_digests)
            await self.app(scope, receive, send)
            return
        if public:  # the platform's probes need no key, and a wrong one is nobody
            await self.app(scope, receive, send)
            return
        if self._failures is not None:
            self._failures.take(address, time.monotonic())
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
            scope,
        )
