"""Graceful drain with real servers and real signals.

Timelines (seconds after the signal) are printed for docs/operations.md; the tests
assert order and outcome, and the exit deadline the platform imposes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    LONG_AUDIO,
    LONG_AUDIO_MAX_WER,
    LONG_AUDIO_SILVER,
    LiveServer,
    assert_begins_like,
    assert_transcript,
    normalize,
    wait_in_flight,
)
from tests.support.media import repeated_wav
from tests.support.speakers import load, wav_bytes
from tests.support.sse import events, posted
from whisper_service.audio import SAMPLE_RATE

Timeline = list[tuple[float, str]]
# What the first 45 s of the address say, to their last whole sentence ("...step into
# voting booths throughout the nation"): 130 words of the silver transcript.
LONG_AUDIO_45S_SILVER = " ".join(normalize(LONG_AUDIO_SILVER).split()[:130])


def start_long_requests(
    server: LiveServer, audio: bytes, count: int, results: list[Any], timeline: Timeline
) -> list[threading.Thread]:
    def call(i: int) -> None:
        try:
            response = httpx.post(
                f"{server.url}/transcribe",
                files={"file": ("long.wav", audio)},
                data={"language": "en"},
                timeout=120,
            )
            results.append(response)
            timeline.append((time.monotonic(), f"request {i} answered {response.status_code}"))
        except httpx.HTTPError as exc:
            results.append(exc)
            timeline.append((time.monotonic(), f"request {i} failed {type(exc).__name__}"))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def print_timeline(title: str, start: float, timeline: Timeline) -> None:
    print(f"\n{title}")
    for moment, event in sorted(timeline):
        print(f"  t+{moment - start:6.2f} s  {event}")


@pytest.fixture(scope="module")
def long_audio(audio_dir: Path) -> bytes:
    return (audio_dir / LONG_AUDIO).read_bytes()


def test_sigterm_to_gunicorn_lets_in_flight_requests_finish(
    live_server: Callable[..., LiveServer], long_audio: bytes
) -> None:
    # 45 s of the address each: in flight at SIGTERM, and done well inside the drain
    # even on a slow machine (three whole addresses at once took over 40 s on one).
    speech = wav_bytes(load(LONG_AUDIO)[: 45 * SAMPLE_RATE])
    drain = 40.0
    server = live_server(
        WHISPER_INFERENCE_WORKERS="3",
        WHISPER_DRAIN_TIMEOUT_SECONDS=str(drain),
        WHISPER_PLATFORM_GRACE_SECONDS="60",
    )
    assert server.process is not None
    results: list[Any] = []
    timeline: Timeline = []
    threads = start_long_requests(server, speech, 3, results, timeline)
    wait_in_flight(server.url, 3)
    sigterm_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)  # the gunicorn master
    timeline.append((sigterm_at, "SIGTERM to the gunicorn master"))

    time.sleep(0.3)
    ready = httpx.get(f"{server.url}/health/ready", timeout=5)
    timeline.append((time.monotonic(), f"/health/ready {ready.status_code}"))
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    late = httpx.post(
        f"{server.url}/transcribe", files={"file": ("x.wav", long_audio[:100_000])}, timeout=10
    )
    timeline.append((time.monotonic(), f"new request refused {late.status_code}"))
    assert late.status_code == 503
    assert late.json()["error"]["code"] == "shutting_down"
    assert late.headers["retry-after"] == "1"
    assert late.headers["connection"] == "close"

    for thread in threads:
        thread.join(timeout=drain + 10)
    exit_code = server.process.wait(timeout=drain + 2)
    timeline.append((time.monotonic(), f"master exited {exit_code}"))
    print_timeline("drain with 3 long transcriptions in flight", sigterm_at, timeline)
    assert [getattr(r, "status_code", r) for r in results] == [200, 200, 200]
    for response in results:  # whole transcripts of the 45 s, not cut short
        assert_begins_like(response.json()["text"], LONG_AUDIO_45S_SILVER, LONG_AUDIO_MAX_WER)
    assert exit_code == 0
    events = [e["message"] for e in server.log_events()]
    assert events.index("drain_started") < events.index("drain_complete")


def test_drain_timeout_cancels_what_is_left_with_a_clear_503(
    live_server: Callable[..., LiveServer], long_audio: bytes
) -> None:
    drain = 2.0
    server = live_server(
        WHISPER_ENGINE="openai-whisper",  # ~15 s for the long file: outlives the drain
        WHISPER_INFERENCE_WORKERS="1",
        WHISPER_DRAIN_TIMEOUT_SECONDS=str(drain),
    )
    assert server.process is not None
    results: list[Any] = []
    timeline: Timeline = []
    threads = start_long_requests(server, long_audio, 2, results, timeline)  # 1 runs, 1 waits
    wait_in_flight(server.url, 2)
    signal_at = time.monotonic()
    # SIGINT, not SIGTERM: it must drain too rather than be gunicorn's quick shutdown.
    server.process.send_signal(signal.SIGINT)
    timeline.append((signal_at, "SIGINT to the gunicorn master"))
    for thread in threads:
        thread.join(timeout=30)
    # drain + 2 s on a quiet machine (3.4-3.7 s measured); the slack is for a busy one.
    exit_code = server.process.wait(timeout=drain + 6)
    timeline.append((time.monotonic(), f"master exited {exit_code}"))
    print_timeline("drain timeout with 1 running + 1 queued", signal_at, timeline)
    assert exit_code == 0
    assert [getattr(r, "status_code", r) for r in results] == [503, 503]
    for response in results:
        assert response.json()["error"]["code"] == "shutting_down"
        assert "retry" in response.json()["error"]["message"]
    cancelled = [e for e in server.log_events() if e["message"] == "drain_timeout_cancelling"]
    assert len(cancelled) == 1
    assert len(cancelled[0]["requests"]) == 2  # type: ignore[arg-type]


def test_plain_uvicorn_drains_on_sigterm_and_exits_zero(
    live_server: Callable[..., LiveServer], audio_dir: Path
) -> None:
    server = live_server(uvicorn=True, WHISPER_DRAIN_TIMEOUT_SECONDS="8")
    assert server.process is not None
    results: list[Any] = []
    timeline: Timeline = []
    audio = (audio_dir / "multilingual.mp3").read_bytes()
    threads = start_long_requests(server, audio, 1, results, timeline)
    wait_in_flight(server.url, 1)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert server.process.wait(timeout=10) == 0
    assert [getattr(r, "status_code", r) for r in results] == [200]


@contextlib.contextmanager
def first_delta_received(server: LiveServer, audio: Path) -> Iterator[Iterator[dict[str, Any]]]:
    """A stream=true request whose first delta has arrived: the events still to come."""
    with posted(f"{server.url}/v1/audio/transcriptions", audio, stream="true") as response:
        assert response.status_code == 200
        received = events(response.iter_lines())
        assert next(received)["type"] == "transcript.text.delta"
        yield received


# Plain uvicorn too: sse-starlette patches uvicorn's exit handler to end every stream
# at once; the drain's handler, in front of it, must keep that from happening.
@pytest.mark.parametrize("uvicorn", [False, True], ids=["gunicorn", "uvicorn"])
def test_a_stream_in_flight_finishes_during_the_drain(
    live_server: Callable[..., LiveServer], audio_dir: Path, uvicorn: bool
) -> None:
    server = live_server(
        uvicorn=uvicorn, WHISPER_DRAIN_TIMEOUT_SECONDS="40", WHISPER_PLATFORM_GRACE_SECONDS="60"
    )
    assert server.process is not None
    with first_delta_received(server, audio_dir / LONG_AUDIO) as received:
        server.process.send_signal(signal.SIGTERM)
        # not cut at the signal: the remaining segments, then the whole transcript
        rest = list(received)
    assert rest[-1]["type"] == "transcript.text.done"
    assert len(rest) >= 5
    assert_transcript(rest[-1]["text"], LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)
    assert server.process.wait(timeout=45) == 0


def test_a_stream_the_drain_timeout_cuts_ends_with_an_error_event(
    live_server: Callable[..., LiveServer], audio_dir: Path, tmp_path: Path
) -> None:
    server = live_server(WHISPER_DRAIN_TIMEOUT_SECONDS="2")
    assert server.process is not None
    # 8.5 minutes of audio: far more than the drain allows
    audio = repeated_wav(audio_dir / LONG_AUDIO, 4, tmp_path / "long.wav")
    with first_delta_received(server, audio) as received:
        server.process.send_signal(signal.SIGTERM)
        rest = list(received)
    assert rest[-1]["type"] == "error"
    assert rest[-1]["error"]["code"] == "shutting_down"
    assert "retry" in rest[-1]["error"]["message"]
    assert server.process.wait(timeout=10) == 0
