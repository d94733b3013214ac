"""Batching across requests through HTTP, on a live server with the real model: eight
concurrent clients get the words one client at a time gets (issue 14)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import JFK_REFERENCE, LiveServer, ljspeech, pooled_wer

pytestmark = pytest.mark.anyio
CLIENTS = 8


def batched(metrics: str, call: str) -> tuple[float, float]:
    """(windows, calls) of the batched model calls named ``call``."""
    values = {}
    for line in metrics.splitlines():
        for kind in ("sum", "count"):
            if line.startswith(f'whisper_batch_size_{kind}{{call="{call}"}}'):
                values[kind] = float(line.split()[-1])
    return values.get("sum", 0.0), values.get("count", 0.0)


async def transcripts(server: LiveServer, files: list[Path], clients: int) -> list[str]:
    """Each file's text, ``clients`` requests at a time."""
    limit = asyncio.Semaphore(clients)

    uploads = {path: path.read_bytes() for path in files}

    async def one(http: httpx.AsyncClient, path: Path) -> str:
        async with limit:
            response = await http.post(
                f"{server.url}/transcribe", files={"file": (path.name, uploads[path])}
            )
        response.raise_for_status()
        return str(response.json()["text"])

    async with httpx.AsyncClient(timeout=300) as http:
        return list(await asyncio.gather(*(one(http, path) for path in files)))


async def test_eight_concurrent_clients_get_the_words_of_one_at_a_time(
    live_server: Callable[..., LiveServer], audio_dir: Path
) -> None:
    server = live_server(WHISPER_BATCH_MAX_SIZE=str(CLIENTS), WHISPER_INFERENCE_WORKERS="1",
                         WHISPER_QUEUE_SIZE="16", WHISPER_RATE_LIMIT_PER_MINUTE="0")  # fmt: skip
    entries = ljspeech()
    files = [e.path for e in entries] + [audio_dir / "jfk.flac"]
    references = [e.reference for e in entries] + [JFK_REFERENCE]
    sequential = await transcripts(server, files, clients=1)
    async with httpx.AsyncClient(timeout=10) as http:
        before = batched((await http.get(f"{server.url}/metrics")).text, "generate")
    concurrent = await transcripts(server, files, clients=CLIENTS)
    async with httpx.AsyncClient(timeout=10) as http:
        after = batched((await http.get(f"{server.url}/metrics")).text, "generate")
    windows, calls = after[0] - before[0], after[1] - before[1]
    assert windows / calls >= 2, (windows, calls)  # they were batched
    # The bound: pooled WER within half a point of one client at a time.
    assert abs(pooled_wer(references, concurrent) - pooled_wer(references, sequential)) <= 0.005
