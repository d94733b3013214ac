"""Per-client token buckets: ``rate_limit_per_minute`` sustained, ``rate_limit_burst``
at once. The client is its API key when authenticated, else its address (after
trusted proxy headers). Buckets live in this process: with several gunicorn workers
each enforces its own share."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_service.api.error_responses import send_error
from whisper_service.api.middleware.paths import is_probe, is_push
from whisper_service.errors import ServiceError

MAX_TRACKED_CLIENTS = 10_000


class TokenBucket:
    """Tokens refill at ``rate`` per second up to ``capacity``."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0: one is), taking nothing."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token: 0 if granted, else seconds until one is available."""
        wait = self.wait(now)
        if wait == 0:
            self.tokens -= 1
        return wait


class ClientBuckets:
    """A token bucket per client (API key id or address), the least recently seen
    forgotten past MAX_TRACKED_CLIENTS."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, client: str) -> bool:
        return client in self._buckets

    def take(self, client: str, now: float) -> float:
        """Take a token: 0 if granted, else seconds until one is available."""
        return self._bucket(client, now).take(now)

    def exhausted(self, client: str, now: float) -> bool:
        """Whether the client has no token left (nothing is taken)."""
        return self._bucket(client, now).wait(now) > 0

    def retry_after(self, client: str) -> float:
        """Seconds until the client has a token again."""
        return self._bucket(client, time.monotonic()).wait(time.monotonic())


def failure_limiter(per_minute: float) -> ClientBuckets | None:
    """Buckets of failed credentials per address: ``per_minute`` sustained, as many at
    once; None when ``per_minute`` is 0 (no limit)."""
    return ClientBuckets(per_minute, max(1, math.ceil(per_minute))) if per_minute > 0 else None


def too_many_failures(retry_after: float) -> ServiceError:
    """429 for an address past its failed-credentials allowance."""
    return ServiceError(
        "too many requests without valid credentials from this address; retry later",
        code="rate_limited",
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


class RateLimitMiddleware:
    """429 with Retry-After when a client's bucket is empty. A WebSocket handshake is a
    request like any other (refused before the upgrade); probes are never limited, nor
    Pub/Sub's pushes where the push routes are mounted (``push_exempt``)."""

    def __init__(
        self, app: ASGIApp, *, per_minute: float, burst: int, push_exempt: bool = False
    ) -> None:
        self.app = app
        self.rate = per_minute / 60.0
        self.burst = burst
        self.push_exempt = push_exempt
        self._buckets = ClientBuckets(per_minute, burst)

    def wait_for(self, client: str, now: float) -> float:
        """Seconds the client must wait (0: go ahead)."""
        return self._buckets.take(client, now)

    def _exempt(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if scope["type"] == "websocket":
            return False
        return (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or is_probe(path)
            or (self.push_exempt and is_push(path))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._exempt(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("state", {}).get("client_id") or client_address(scope)
        wait = self.wait_for(str(client), time.monotonic())
        if wait > 0:
            await send_error(
                send,
                ServiceError(
                    f"too many requests from this client; at most {self.burst} at once and "
                    f"{self.rate * 60:g} per minute",
                    code="rate_limited",
                    status=429,
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                ),
                scope,
            )
            return
        await self.app(scope, receive, send)


def client_address(scope: Scope) -> str:
    """The caller's address (after the trusted proxies' X-Forwarded-For)."""
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"
