"""Async jobs on real servers with the offline backends (a directory store, the local
queue): the 127 s radio address through POST /jobs, progress, results, cancellation,
SIGKILL mid-job and restart recovery, SIGTERM and worker recycling.

Jobs spread over three instances on Pub/Sub and Firestore (their emulators) are in
test_distributed_jobs.py.
"""

from __future__ import annotations

import signal
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
    assert_transcript,
    pooled_wer,
    running,
)
from tests.support.subtitles import parse_srt_strict
from whisper_service.jobs.objects import LocalObjects
from whisper_service.jobs.records import Job
from whisper_service.jobs.store import DirectoryStore

# One window per batch and units of at most 30 s: five units of one window each on
# the 127 s file, so progress moves and a restart has something to resume.
SMALL_UNITS = {
    "WHISPER_JOBS_BATCH_SIZE": "1",
    "WHISPER_JOBS_UNIT_MAX_AUDIO_SECONDS": "30",
}


@pytest.fixture(scope="module")
def long_audio(audio_dir: Path) -> bytes:
    return (audio_dir / LONG_AUDIO).read_bytes()


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    logs = tmp_path_factory.mktemp("jobs")
    with running(logs, WHISPER_JOBS_STORE=str(logs / "store"), **SMALL_UNITS) as server:
        yield server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Servers (plain uvicorn: one process to SIGKILL) stopped at the test's end."""
    started: list[LiveServer] = []

    def start(store: Path, **env: str) -> LiveServer:
        server = LiveServer(tmp_path, WHISPER_JOBS_STORE=str(store), **SMALL_UNITS, **env)
        started.append(server.start(uvicorn=True))
        return server

    yield start
    for server in started:
        server.stop()


def submit(server: LiveServer, audio: bytes, **fields: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/jobs", files={"file": ("long.wav", audio)}, data=fields, timeout=60
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    return body


def get(server: LiveServer, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    server: LiveServer,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 120,
    interval: float = 0.1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until ``done(job)``; return the last view and every progress seen."""
    seen: list[dict[str, Any]] = []
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            job = get(server, job_id)
        except httpx.TransportError:  # a recycled worker closed the poll unanswered
            time.sleep(interval)
            continue
        seen.append(job["progress"])
        if done(job):
            return job, seen
        time.sleep(interval)
    raise AssertionError(f"job {job_id} never got there: {seen[-1:]}\n{server.logs()[-3000:]}")


def kill_mid_unit(server: LiveServer, store: Path, job_id: str) -> Job:
    """SIGKILL ``server`` while a unit of the job is delivered (counted) and not done,
    after at least one is done; return the record as the kill left it.

    Between two units nothing is in flight, and a kill there tests no redelivery (the
    next unit's first delivery would come from the restart). So the process is
    stopped (SIGSTOP), its record read, and killed only when a unit is in flight;
    otherwise it continues and is tried again. The store writes by rename, so a
    stopped process leaves a whole record."""
    assert server.process is not None
    records = DirectoryStore(LocalObjects(store))
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        server.process.send_signal(signal.SIGSTOP)
        record = records.get(job_id)
        if record is not None and record.units_done and units_in_flight(record):
            server.process.kill()
            server.process.wait()
            return record
        server.process.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no unit of {job_id} was ever in flight\n{server.logs()[-3000:]}")


def units_in_flight(record: Job) -> list[int]:
    """Units delivered at least once whose result is not stored."""
    delivered = (int(piece) for piece in record.deliveries if piece != "plan")
    return [unit for unit in delivered if unit not in record.units_done]


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def mid_job(job: dict[str, Any]) -> bool:
    total = job["progress"]["windows_total"]
    return bool(total) and 1 <= job["progress"]["windows_done"] < total - 1


def test_long_job_progress_grows_and_the_result_matches_transcribe(
    job_server: LiveServer, long_audio: bytes
) -> None:
    accepted = submit(job_server, long_audio, response_format="srt", language="en")
    assert accepted["status"] == "queued"
    job, seen = wait_for(job_server, accepted["id"], finished)
    assert job["status"] == "succeeded", job["error"]

    done = [p["audio_seconds_done"] for p in seen]
    assert done == sorted(done), "progress went backwards"
    total = job["progress"]["audio_seconds_total"]
    assert abs(total - 127.36) < 0.1
    assert any(0 < d < total for d in done), f"no intermediate progress seen: {sorted(set(done))}"
    assert job["progress"]["windows_done"] == job["progress"]["windows_total"] >= 4
    assert job["units"]["done"] == job["units"]["total"] >= 4

    # The same words as one synchronous /transcribe of the whole file.
    sync = httpx.post(
        f"{job_server.url}/transcribe",
        files={"file": ("long.wav", long_audio)},
        data={"language": "en"},
        timeout=300,
    ).json()["text"]
    result = job["result"]
    difference = pooled_wer([sync], [result["text"]])
    print(f"\njob vs /transcribe word difference on {LONG_AUDIO}: {difference:.3f}")
    assert difference < 0.1
    assert_transcript(result["text"], LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)

    # Timestamps run on across windows: ordered, within the audio, reaching its end.
    segments = result["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments)))
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert all(s["start"] <= s["end"] <= total + 0.5 for s in segments)
    assert segments[0]["start"] < 1.0
    assert segments[-1]["end"] > total - 10

    srt = httpx.get(job["result_url"], timeout=10)
    assert srt.headers["content-type"].startswith("application/x-subrip")
    cues = parse_srt_strict(srt.text)
    assert len(cues) == len(segments)
    vtt = httpx.get(job["result_url"], params={"response_format": "vtt"}, timeout=10)
    assert vtt.text.startswith("WEBVTT")

    listed = httpx.get(f"{job_server.url}/jobs", params={"limit": 5}, timeout=10).json()["data"]
    assert accepted["id"] in [j["id"] for j in listed]


def test_cancel_a_running_job(job_server: LiveServer, long_audio: bytes) -> None:
    accepted = submit(job_server, long_audio)
    wait_for(job_server, accepted["id"], lambda j: j["status"] == "running")
    response = httpx.delete(accepted["status_url"], timeout=10)
    assert response.status_code in (200, 202), response.text
    job, _ = wait_for(job_server, accepted["id"], finished, timeout=30)
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "cancelled"
    result = httpx.get(f"{accepted['status_url']}/result", timeout=10)
    assert result.status_code == 409
    assert result.json()["error"]["code"] == "job_not_succeeded"
    again = httpx.delete(accepted["status_url"], timeout=10)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_finished"


def units_started(server: LiveServer) -> list[int]:
    """The units this server began working on, in order."""
    events = server.log_events()
    return [
        int(str(e["piece"]))
        for e in events
        if e.get("message") == "job_delivery_started" and e.get("piece") != "plan"
    ]


def test_sigkill_mid_job_then_restart_resumes_it(
    servers: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    first = servers(store)
    accepted = submit(first, long_audio, language="en")
    wait_for(first, accepted["id"], mid_job)
    record = kill_mid_unit(first, store, accepted["id"])
    done_before = set(record.units_done)

    second = servers(store)
    job, _ = wait_for(second, accepted["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    recovered = [e for e in second.log_events() if e.get("message") == "job_recovered"]
    assert [e["job_id"] for e in recovered] == [accepted["id"]]
    # It resumed: no unit stored before the kill was done again.
    assert not done_before & set(units_started(second))
    assert job["attempts"] <= 2
    segments = job["result"]["segments"]
    assert segments[-1]["end"] > job["progress"]["audio_seconds_total"] - 10
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert_transcript(job["result"]["text"], LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)


def test_a_job_that_keeps_killing_instances_fails_with_the_reason(
    servers: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    first = servers(store, WHISPER_JOBS_MAX_ATTEMPTS="1")
    accepted = submit(first, long_audio)
    wait_for(first, accepted["id"], mid_job)
    kill_mid_unit(first, store, accepted["id"])  # as if the unit it was on had killed it

    second = servers(store, WHISPER_JOBS_MAX_ATTEMPTS="1")
    job, _ = wait_for(second, accepted["id"], finished, timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "job_delivery_failed"
    assert "failed on all 1 deliveries" in job["error"]["message"]
    dead = [e for e in second.log_events() if e.get("message") == "job_dead_lettered"]
    assert dead, second.logs()


def test_sigterm_gives_running_units_back_and_a_restart_finishes_them(
    live_server: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    server = live_server(WHISPER_JOBS_STORE=str(store), **SMALL_UNITS)
    accepted = submit(server, long_audio)
    wait_for(server, accepted["id"], mid_job)
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    print(f"\nSIGTERM mid-job: exited 0 after {time.monotonic() - signalled:.2f} s")

    record = DirectoryStore(LocalObjects(store)).get(accepted["id"])
    assert isinstance(record, Job)
    assert record.status.value == "running"  # not failed, not lost: waiting for a queue
    assert record.progress.windows_done >= 1
    stopped = [e for e in server.log_events() if e.get("message") == "job_delivery_retry"]
    print(f"units given back on SIGTERM: {len(stopped)}")

    restarted = live_server(WHISPER_JOBS_STORE=str(store), **SMALL_UNITS)
    job, _ = wait_for(restarted, accepted["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] <= 2
    assert not set(record.units_done) & set(units_started(restarted))


def test_openai_whisper_runs_jobs_in_fixed_windows(
    live_server: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    server = live_server(
        WHISPER_ENGINE="openai-whisper",
        WHISPER_JOBS_STORE=str(tmp_path / "store"),
        WHISPER_JOBS_CHUNKING="fixed",
        WHISPER_JOBS_BATCH_SIZE="2",
        # Greedy: the windows and their batches are what is tested here, and a beam of
        # five made this the suite's slowest test (75 s).
        WHISPER_DEFAULT_BEAM_SIZE="1",
    )
    accepted = submit(server, long_audio, response_format="verbose_json")
    job, _ = wait_for(server, accepted["id"], finished, timeout=240)
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["windows_total"] == 5  # 127 s in 30 s windows
    # Fixed windows may cut a word at each of the 4 boundaries; the rest must be there.
    assert_transcript(job["result"]["text"], LONG_AUDIO_SILVER, 0.3)
    segments = job["result"]["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert segments[-1]["end"] > job["progress"]["audio_seconds_total"] - 10
    # Every 30 s window contributed: no stretch of the timeline is missing.
    for boundary in (30, 60, 90, 120):
        assert any(s["start"] <= boundary + 10 and s["end"] >= boundary - 10 for s in segments)


def test_an_unusable_store_stops_the_service_at_boot(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant job records here
    server = LiveServer(tmp_path, WHISPER_JOBS_STORE=str(shared))
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            server.start(timeout=60)
    finally:
        server.stop()
    assert server.process is not None
    assert server.process.returncode != 0
    unusable = [e for e in server.log_events() if e.get("message") == "job_store_unusable"]
    assert unusable, server.logs()
    assert "writable only by it" in str(unusable[0]["error"])


def test_a_worker_recycled_mid_job_has_its_job_recovered(
    live_server: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    # gunicorn replaces a worker after WHISPER_MAX_REQUESTS (polls count): no signal,
    # no drain, just a shutdown. Its replacement finds the job and goes on with it.
    server = live_server(
        WHISPER_JOBS_STORE=str(tmp_path / "store"),
        WHISPER_MAX_REQUESTS="40",
        WHISPER_MAX_REQUESTS_JITTER="0",
        **SMALL_UNITS,
    )
    accepted = submit(server, long_audio)
    wait_for(server, accepted["id"], lambda j: j["status"] == "running")
    for _ in range(40):  # the worker's last requests: it is replaced mid-job
        try:
            httpx.get(f"{server.url}/health/live", timeout=10)
        except httpx.TransportError:
            # uvicorn closes, unanswered, a connection it accepted just as its request
            # limit shut it down; a client (or Cloud Run's front end) retries that.
            time.sleep(0.2)
    job, _ = wait_for(server, accepted["id"], finished, timeout=180, interval=0.5)
    assert job["status"] == "succeeded", job["error"]
    recovered = [e for e in server.log_events() if e.get("message") == "job_recovered"]
    assert recovered, "the worker was not recycled during the job"
