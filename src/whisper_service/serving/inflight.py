"""Requests being served right now: what the drain waits for and what it cancels."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from whisper_service.engines.base import CancelToken


@dataclass
class InFlightRequest:
    """One request being served."""

    request_id: str
    method: str
    path: str
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    token: CancelToken | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape for logs and the health report."""
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "started_at": self.started_at,
            "age_seconds": round(time.monotonic() - self.started_monotonic, 3),
        }


class InFlightTracker:
    """Requests being served, by request id."""

    def __init__(self) -> None:
        self._requests: dict[str, InFlightRequest] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, request_id: str, method: str, path: str) -> None:
        """Start tracking a request."""
        self._requests[request_id] = InFlightRequest(request_id, method, path[:200])
        self._idle.clear()

    def remove(self, request_id: str) -> None:
        """Stop tracking a request."""
        self._requests.pop(request_id, None)
        if not self._requests:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once nothing is in flight."""
        await self._idle.wait()

    def attach_token(self, request_id: str | None, token: CancelToken) -> None:
        """Let the drain cancel this request's work."""
        if request_id in self._requests:
            self._requests[request_id].token = token

    def __len__(self) -> int:
        return len(self._requests)

    def snapshot(self) -> list[InFlightRequest]:
        """The tracked requests, oldest first."""
        return sorted(self._requests.values(), key=lambda r: r.started_monotonic)
