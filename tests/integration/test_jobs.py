"""Async jobs on real servers: the 127 s radio address through POST /jobs, progress,
results, cancellation, SIGKILL mid-job and restart, and the hand-over on SIGTERM.

The store is a local directory here (the development preset's kind); the GCS store is
exercised against the emulator in test_gcs.py.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_formats_http import parse_srt_strict
from tests.support import LONG_AUDIO, LiveServer, normalize, pooled_wer
from whisper_service.jobs.objects import LocalObjects
from whisper_service.jobs.records import Job
from whisper_service.jobs.store import JobStore

# One window per batch: five progress steps on the 127 s file instead of one.
FAST_RECOVERY = {
    "WHISPER_JOBS_BATCH_SIZE": "1",
    "WHISPER_JOBS_LEASE_SECONDS": "3",
    "WHISPER_JOBS_SWEEP_INTERVAL_SECONDS": "1",
}


@pytest.fixture(scope="module")
def long_audio(audio_dir: Path) -> bytes:
    return (audio_dir / LONG_AUDIO).read_bytes()


@pytest.fixture(scope="module")
def job_server(server_factory: Callable[..., LiveServer], tmp_path_factory: Any) -> LiveServer:
    store = tmp_path_factory.mktemp("jobs") / "store"
    return server_factory(WHISPER_JOBS_STORE=str(store), **FAST_RECOVERY)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Servers (plain uvicorn: one process to SIGKILL) stopped at the test's end."""
    started: list[LiveServer] = []

    def start(store: Path, **env: str) -> LiveServer:
        server = LiveServer(tmp_path, WHISPER_JOBS_STORE=str(store), **FAST_RECOVERY, **env)
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
    server: LiveServer, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll until ``done(job)``; return the last view and every progress seen."""
    seen: list[dict[str, Any]] = []
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        job = get(server, job_id)
        seen.append(job["progress"])
        if done(job):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never got there: {seen[-1:]}\n{server.logs()[-3000:]}")


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
    assert "election day" in normalize(result["text"])

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


def test_cancel_a_queued_job_and_the_instance_limit(
    server_factory: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    server = server_factory(WHISPER_JOBS_STORE=str(tmp_path / "store"), WHISPER_JOBS_MAX_ACTIVE="2")
    first = submit(server, long_audio)
    second = submit(server, long_audio)
    third = httpx.post(f"{server.url}/jobs", files={"file": ("a.wav", long_audio)}, timeout=60)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "jobs_full"
    assert third.headers["retry-after"]

    jobs = httpx.get(f"{server.url}/health", timeout=10).json()["jobs"]
    assert jobs["held"] == 2
    assert jobs["max_active"] == 2
    assert jobs["store"] == str(tmp_path / "store")

    cancelled = httpx.delete(second["status_url"], timeout=10)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    httpx.delete(first["status_url"], timeout=10)
    wait_for(server, first["id"], finished, timeout=60)
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'whisper_jobs_finished_total{status="cancelled"} 2.0' in metrics
    assert httpx.get(f"{server.url}/health", timeout=10).json()["jobs"]["held"] == 0


def test_sigkill_mid_job_then_restart_resumes_it(
    servers: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    first = servers(store)
    accepted = submit(first, long_audio, language="en")
    before, _ = wait_for(first, accepted["id"], mid_job)
    assert first.process is not None
    first.process.kill()
    first.process.wait()

    second = servers(store)
    job, seen = wait_for(second, accepted["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    assert job["interruptions"] == 1
    assert job["attempts"] == 2
    # It resumed from its checkpoint rather than starting over.
    assert min(p["windows_done"] for p in seen) >= before["progress"]["windows_done"]
    resumed = [e for e in second.log_events() if e.get("message") == "job_resumed"]
    assert resumed
    assert resumed[0]["windows_done"] >= before["progress"]["windows_done"]
    segments = job["result"]["segments"]
    assert segments[-1]["end"] > job["progress"]["audio_seconds_total"] - 10
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)


def test_a_job_that_keeps_killing_instances_fails_with_the_reason(
    servers: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    first = servers(store, WHISPER_JOBS_MAX_INTERRUPTIONS="0")
    accepted = submit(first, long_audio)
    wait_for(first, accepted["id"], mid_job)
    assert first.process is not None
    first.process.kill()
    first.process.wait()

    second = servers(store, WHISPER_JOBS_MAX_INTERRUPTIONS="0")
    job, _ = wait_for(second, accepted["id"], finished, timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "interrupted"
    assert "stopped without handing it over" in job["error"]["message"]


def test_sigterm_hands_running_jobs_over_and_a_restart_finishes_them(
    server_factory: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    store = tmp_path / "store"
    server = server_factory(WHISPER_JOBS_STORE=str(store), **FAST_RECOVERY)
    accepted = submit(server, long_audio)
    wait_for(server, accepted["id"], mid_job)
    assert server.process is not None
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    print(f"\nSIGTERM mid-job: exited 0 after {time.monotonic() - signalled:.2f} s")

    record = JobStore(LocalObjects(store)).get(accepted["id"])
    assert isinstance(record, Job)
    assert record.status.value == "queued"
    assert record.instance is None  # handed over: claimable at once, not after a lease
    assert record.progress.windows_done >= 1

    restarted = server_factory(WHISPER_JOBS_STORE=str(store), **FAST_RECOVERY)
    job, _ = wait_for(restarted, accepted["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    assert job["interruptions"] == 0
    assert job["attempts"] == 2


def test_job_errors(job_server: LiveServer, audio_dir: Path) -> None:
    url = f"{job_server.url}/jobs"
    not_audio = httpx.post(url, files={"file": ("a.wav", b"not audio at all" * 100)}, timeout=30)
    assert not_audio.status_code == 415
    assert not_audio.json()["error"]["code"] == "undecodable_audio"
    empty = httpx.post(url, files={"file": ("a.wav", b"")}, timeout=30)
    assert empty.status_code == 422
    neither = httpx.post(url, data={"language": "en"}, timeout=30)
    assert neither.status_code == 400
    with (audio_dir / "jfk.flac").open("rb") as fp:
        translate = httpx.post(url, files={"file": fp}, data={"task": "translate"}, timeout=30)
    assert translate.status_code == 400
    assert translate.json()["error"]["code"] == "unsupported_option"
    no_gcs = httpx.post(url, data={"gcs_uri": "gs://somewhere/x.wav"}, timeout=30)
    assert no_gcs.status_code == 400
    assert no_gcs.json()["error"]["code"] == "gcs_bucket_not_allowed"
    for path in ("/jobs/job_0123", "/jobs/job_..%2F..%2Fjob", "/jobs/job_01a2067bc6e3000000000000"):
        missing = httpx.get(f"{job_server.url}{path}", timeout=10)
        assert missing.status_code == 404, path


def test_jobs_need_a_store(default_server: LiveServer) -> None:
    # The test servers run the development preset with its store unset (tests/support.py).
    response = httpx.get(f"{default_server.url}/jobs", timeout=10)
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "jobs_not_configured"


def test_openai_whisper_runs_jobs_in_fixed_windows(
    server_factory: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    server = server_factory(
        WHISPER_ENGINE="openai-whisper",
        WHISPER_JOBS_STORE=str(tmp_path / "store"),
        WHISPER_JOBS_CHUNKING="fixed",
        WHISPER_JOBS_BATCH_SIZE="2",
    )
    accepted = submit(server, long_audio, response_format="verbose_json")
    job, _ = wait_for(server, accepted["id"], finished, timeout=240)
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["windows_total"] == 5  # 127 s in 30 s windows
    text = normalize(job["result"]["text"])
    assert "election day" in text
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
    with pytest.raises(RuntimeError, match="server exited"):
        server.start(timeout=60)
    assert server.process is not None
    assert server.process.returncode != 0
    unusable = [e for e in server.log_events() if e.get("message") == "job_store_unusable"]
    assert unusable, server.logs()
    assert "writable only by it" in str(unusable[0]["error"])


def test_a_job_is_visible_to_its_own_api_key_only(
    server_factory: Callable[..., LiveServer], tmp_path: Path, audio_dir: Path
) -> None:
    alice, bob = "alice-" + "a" * 32, "bob-" + "b" * 32
    server = server_factory(
        WHISPER_JOBS_STORE=str(tmp_path / "store"), WHISPER_API_KEYS=f"{alice},{bob}"
    )
    as_alice, as_bob = {"X-API-Key": alice}, {"X-API-Key": bob}
    accepted = httpx.post(
        f"{server.url}/jobs",
        files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
        headers=as_alice,
        timeout=30,
    )
    assert accepted.status_code == 202
    status_url = accepted.json()["status_url"]
    assert httpx.get(status_url, headers=as_alice, timeout=10).status_code == 200
    for method in ("GET", "DELETE"):
        other = httpx.request(method, status_url, headers=as_bob, timeout=10)
        assert other.status_code == 404, method
        assert other.json()["error"]["code"] == "job_not_found"
    assert httpx.get(f"{server.url}/jobs", headers=as_bob, timeout=10).json()["data"] == []
    mine = httpx.get(f"{server.url}/jobs", headers=as_alice, timeout=10).json()["data"]
    assert [j["id"] for j in mine] == [accepted.json()["id"]]
    assert "client" not in mine[0]  # the key's id is never shown
    assert httpx.get(status_url, timeout=10).status_code == 401


def test_a_job_waits_while_the_memory_guard_is_on(
    server_factory: Callable[..., LiveServer], tmp_path: Path, audio_dir: Path
) -> None:
    server = server_factory(
        WHISPER_JOBS_STORE=str(tmp_path / "store"),
        WHISPER_HEALTH_MEMORY_DEGRADED_PERCENT="0",
        WHISPER_HEALTH_MEMORY_UNHEALTHY_PERCENT="0.5",  # always "short of memory"
        WHISPER_HEALTH_SAMPLE_INTERVAL_SECONDS="0.5",
    )
    accepted = submit(server, (audio_dir / "jfk.flac").read_bytes())
    wait_for(server, accepted["id"], lambda j: j["progress"]["windows_total"] is not None)
    time.sleep(2)
    job = get(server, accepted["id"])
    assert job["status"] == "running"
    assert job["progress"]["windows_done"] == 0  # no batch started under memory pressure
    assert any(e.get("message") == "job_waiting_for_memory" for e in server.log_events())
    assert httpx.delete(accepted["status_url"], timeout=10).status_code == 200
    assert get(server, accepted["id"])["status"] == "cancelled"


def test_a_worker_recycled_mid_job_hands_it_over(
    server_factory: Callable[..., LiveServer], tmp_path: Path, long_audio: bytes
) -> None:
    # gunicorn replaces a worker after WHISPER_MAX_REQUESTS (polls count): no signal,
    # no drain, just a shutdown. The job must not count that as an interruption.
    server = server_factory(
        WHISPER_JOBS_STORE=str(tmp_path / "store"),
        WHISPER_MAX_REQUESTS="40",
        WHISPER_MAX_REQUESTS_JITTER="0",
        **FAST_RECOVERY,
    )
    accepted = submit(server, long_audio)
    job, _ = wait_for(server, accepted["id"], finished, timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["interruptions"] == 0
    assert job["attempts"] >= 2, "the worker was not recycled during the job"
