"""The doors live sessions and Pub/Sub pushes opened, abused against real servers
(issue 23): memory from the whole process tree, the event loop seen through
/health/live, handshakes refused before the upgrade. Traffic goes to 127.0.0.1 only,
bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import LONG_AUDIO, LiveServer, free_port
from tests.support.speakers import load

pytestmark = pytest.mark.anyio

MIB = 2**20
PUSH_TOKEN = "push-token-for-the-emulator-0123456789"  # noqa: S105 - the emulator's stand-in
# A dead-end address for the Pub/Sub client: the push routes need the queue configured,
# and nothing here publishes.
TOPIC = "projects/whisper-test/topics/abuse"


class TreeMemory:
    """The resident memory of a server's whole process tree, sampled every 20 ms."""

    def __init__(self, server: LiveServer) -> None:
        assert server.process is not None
        self.root = psutil.Process(server.process.pid)
        self.peak = self.baseline = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        total = 0
        for process in (self.root, *self.root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / MIB


def raw_post(url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[float, bytes]:
    """Send a request's head, read the answer if one comes within 10 s without the
    body, then try to send the body anyway (a refusing server closes on it). Returns
    the seconds until the answer and its first bytes."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall((head + "\r\n").encode())
        try:
            answer = sock.recv(256)
        except TimeoutError:
            answer = b""
        seconds = time.monotonic() - started
        try:
            for start in range(0, len(body), MIB):
                sock.sendall(body[start : start + MIB])
        except OSError:
            pass  # refused and closed: what a guard should do
    return seconds, answer


@pytest.fixture(scope="module")
def pushed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    logs = tmp_path_factory.mktemp("push")
    server = LiveServer(
        logs,
        PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
        GOOGLE_CLOUD_PROJECT="whisper-test",
        WHISPER_JOBS_STORE=str(logs / "store"),
        WHISPER_JOBS_QUEUE="pubsub",
        WHISPER_PUBSUB_TOPIC=TOPIC,
        WHISPER_PUBSUB_DEAD_LETTER_TOPIC=f"{TOPIC}-dead-letter",
        WHISPER_PUBSUB_PUSH_TOKEN=PUSH_TOKEN,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_push_body_costs_nothing_before_its_credentials_pass(pushed_server: LiveServer) -> None:
    # 46 MiB of empty lists in a list: about 1.2 GiB as Python objects, were it parsed.
    body = b"[" + b"[]," * (46 * MIB // 3) + b"[]]"
    declared = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    with TreeMemory(pushed_server) as memory:
        for query in ("", "?token=guess"):
            seconds, answer = raw_post(
                pushed_server.url, f"/internal/jobs/units{query}", declared, body
            )
            assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 403")), answer
            assert seconds < 5  # answered from the head alone: the body was never awaited
        # The subscription's own credentials, and a body no delivery needs: 413 at once.
        seconds, answer = raw_post(
            pushed_server.url, f"/internal/jobs/units?token={PUSH_TOKEN}", declared, body
        )
        assert answer.startswith(b"HTTP/1.1 413"), answer
    print(f"\nunauthenticated 46 MiB push: process tree +{memory.growth_mib:.0f} MiB")
    assert memory.growth_mib < 64, f"the process tree grew by {memory.growth_mib:.0f} MiB"
    assert pushed_server.alive()


def health_latencies(url: str, stop: threading.Event, seen: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            client.get(f"{url}/health/live").raise_for_status()
            seen.append(time.monotonic() - started)
            time.sleep(0.02)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def test_huge_frames_do_not_hold_the_event_loop(default_server: LiveServer) -> None:
    # Just under uvicorn's own 16 MiB message limit: 524 s of audio at 16 kHz in one
    # frame, which the service used to resample and score on the event loop.
    huge = b"\x01\x00" * (8 * MIB - 512)
    large = b"\x01\x00" * MIB  # 2 MiB: over a frame's limit, under a message's
    latencies: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(
        target=health_latencies, args=(default_server.url, stop, latencies), daemon=True
    )
    probe.start()
    try:
        for _ in range(3):  # a new session each time: a session's first frame is checked alone
            async with connect(native_url(default_server), proxy=None, max_size=None) as ws:
                await ws.send(json.dumps({"type": "start"}))  # server VAD: 524 s to score
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(large)
                error = json.loads(await ws.recv())
                assert (error["type"], error["code"]) == ("error", "frame_too_large")
                await ws.send(huge)  # refused from its header: the server closes (1009)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1009
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        probe.join()
    median, worst = statistics.median(latencies), max(latencies)
    print(f"\n/health/live while 16 MiB frames arrive: p50 {median:.4f} s, "
          f"p99 {p99(latencies):.3f} s, max {worst:.3f} s ({len(latencies)} probes)")  # fmt: skip
    # A liveness probe that waits on one frame's decoding is a restart waiting to happen.
    assert p99(latencies) < 0.5, f"/health/live p99 {p99(latencies):.3f} s"


def native_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/stream"


def realtime_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


async def refused(server: LiveServer, **options: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(realtime_url(server), proxy=None, **options):
            pass
    response = refusal.value.response
    return response.status_code, json.loads(response.body or b"{}")["error"]["code"]


async def test_handshakes_are_rate_limited_and_one_key_cannot_hold_every_place(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(
        WHISPER_API_KEYS="first-key-0123456789abcdef,second-key-0123456789abcdef",
        WHISPER_AUTH_REQUIRED="true",
        WHISPER_RATE_LIMIT_PER_MINUTE="6",
        WHISPER_RATE_LIMIT_BURST="3",
        WHISPER_REALTIME_MAX_SESSIONS="8",
        WHISPER_REALTIME_MAX_SESSIONS_PER_CLIENT="2",
    )
    first = {"additional_headers": {"Authorization": "Bearer first-key-0123456789abcdef"}}
    second = {"additional_headers": {"X-API-Key": "second-key-0123456789abcdef"}}
    sessions: list[ClientConnection] = []
    try:
        for _ in range(2):
            sessions.append(await connect(realtime_url(server), proxy=None, **first))
            assert json.loads(await sessions[-1].recv())["type"] == "session.created"
        # Places are left on the instance, but this key holds its share of them.
        assert await refused(server, **first) == (429, "too_many_sessions_for_client")
        # Its handshakes count as requests: the fourth in a burst of three is refused.
        assert await refused(server, **first) == (429, "rate_limited")
        async with connect(realtime_url(server), proxy=None, **second) as other:
            assert json.loads(await other.recv())["type"] == "session.created"
    finally:
        for session in sessions:
            await session.close()


async def test_a_foreign_pages_handshake_is_refused(default_server: LiveServer) -> None:
    # The development preset: no keys, no CORS origins, as on a developer's machine.
    assert await refused(default_server, origin="https://evil.example") == (
        403,
        "origin_not_allowed",
    )
    own = f"http://127.0.0.1:{default_server.port}"
    for allowed in ({"origin": own}, {}):  # its own page, and clients that are not browsers
        async with connect(realtime_url(default_server), proxy=None, **allowed) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_a_session_committing_in_a_loop_does_not_starve_requests(
    live_server: Callable[..., LiveServer], audio_dir: Path
) -> None:
    server = live_server(
        WHISPER_INFERENCE_WORKERS="1",
        WHISPER_BATCH_MAX_SIZE="1",
        WHISPER_QUEUE_TIMEOUT_SECONDS="20",
    )
    speech = (load("jfk.flac")[:3200] * 32767).astype("<i2").tobytes()  # 200 ms
    refusals = 0

    async def commit_in_a_loop(ws: ClientConnection) -> None:
        nonlocal refusals
        while True:
            await ws.send(speech)
            await ws.send(json.dumps({"type": "commit"}))
            await asyncio.sleep(0.01)

    async def count_refusals(ws: ClientConnection) -> None:
        nonlocal refusals
        async for raw in ws:
            event = json.loads(raw)
            refusals += event.get("code") == "too_many_pending_turns"

    # Two sessions: while one's final runs, the other's waits, and took the worker
    # ahead of everything else as each final ended.
    sessions = [await connect(native_url(server), proxy=None) for _ in range(2)]
    tasks = []
    try:
        for ws in sessions:
            await ws.send(json.dumps({"type": "start", "turn_detection": None}))
            assert json.loads(await ws.recv())["type"] == "ready"
            tasks += [asyncio.ensure_future(commit_in_a_loop(ws)),
                      asyncio.ensure_future(count_refusals(ws))]  # fmt: skip
        await asyncio.sleep(2)  # their backlogs are there before the request comes
        async with httpx.AsyncClient(timeout=60) as http:
            upload = {"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())}
            answer = await http.post(f"{server.url}/transcribe", files=upload)
    finally:
        for task in tasks:
            task.cancel()
        for ws in sessions:
            await ws.close()
    # Before, the sessions' finals went ahead of it, turn about, until the queue
    # timeout (503); now a session behind waits in line, and its backlog is bounded.
    assert answer.status_code == 200, answer.text
    assert refusals > 0


async def test_audio_without_a_commit_is_cut_at_the_turn_cap(default_server: LiveServer) -> None:
    speech = load(LONG_AUDIO)[: 95 * 16_000]
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()
    async with connect(native_url(default_server), proxy=None) as ws:
        await ws.send(json.dumps({"type": "start", "turn_detection": None}))
        assert json.loads(await ws.recv())["type"] == "ready"
        for start in range(0, len(pcm), 320_000):  # 10 s frames, ahead of real time
            await ws.send(pcm[start : start + 320_000])
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(120):
            while len([e for e in seen if e["type"] == "final"]) < 3:
                seen.append(json.loads(await ws.recv()))
    # Held no longer than a turn may be: three finals of 30 s, not one of 95 s later.
    finals = [e for e in seen if e["type"] == "final"]
    assert [round(e["end"] - e["start"]) for e in finals] == [30, 30, 30]
    assert all(e["text"] for e in finals)
