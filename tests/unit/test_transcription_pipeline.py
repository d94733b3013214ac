"""The pipeline's watch on the client while work that checks a token runs."""

from __future__ import annotations

import asyncio
import time

import pytest

from whisper_service.api.transcription import while_connected
from whisper_service.engines import Cancelled, CancelToken


class Client:
    """A request whose client leaves after ``leaves_after`` seconds."""

    def __init__(self, leaves_after: float) -> None:
        self.gone_at = time.monotonic() + leaves_after

    async def is_disconnected(self) -> bool:
        return time.monotonic() >= self.gone_at


def decode_until_cancelled(token: CancelToken) -> str:
    """Stand-in for decoding: checks its token between packets, as decode_audio does."""
    for _ in range(1000):
        token.check()
        time.sleep(0.01)
    return "decoded"


def test_work_stops_when_the_client_leaves() -> None:
    async def scenario() -> float:
        token = CancelToken()
        started = time.monotonic()
        with pytest.raises(Cancelled, match="client_disconnected"):
            await while_connected(
                Client(leaves_after=0.3),  # type: ignore[arg-type]
                token,
                asyncio.to_thread(decode_until_cancelled, token),
            )
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2.0  # not the 10 s the work would take


def test_work_finishes_while_the_client_stays() -> None:
    async def scenario() -> str:
        token = CancelToken()

        def quick(t: CancelToken) -> str:
            t.check()
            return "decoded"

        return await while_connected(
            Client(leaves_after=60),  # type: ignore[arg-type]
            token,
            asyncio.to_thread(quick, token),
        )

    assert asyncio.run(scenario()) == "decoded"
