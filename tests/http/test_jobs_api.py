"""The /jobs API's own rules: checks before the 202, per-key visibility, cancelling,
no store, the memory guard, failures (in-process, a directory store, the local queue
and a stand-in engine; jobs across processes, crashes and restarts run against real
servers in tests/integration/test_jobs.py, and across instances on Pub/Sub and
Firestore in tests/integration/test_distributed_jobs.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import InProcess, serve

pytestmark = pytest.mark.anyio


async def submit(client: httpx.AsyncClient, audio: bytes, **fields: str) -> dict[str, Any]:
    response = await client.post("/jobs", files={"file": ("a.flac", audio)}, data=fields)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    return body


async def wait_for_status(service: InProcess, job_id: str, *wanted: str) -> dict[str, Any]:
    give_up = time.monotonic() + 30
    while True:
        job: dict[str, Any] = (await service.client.get(f"/jobs/{job_id}")).json()
        if job["status"] in wanted or time.monotonic() > give_up:
            return job
        await asyncio.sleep(0.05)


async def test_checks_before_the_202(tmp_path: Path, audio_dir: Path) -> None:
    async with serve(jobs_store=str(tmp_path / "store")) as service:
        client = service.client
        not_audio = await client.post("/jobs", files={"file": ("a.wav", b"not audio" * 100)})
        assert not_audio.status_code == 415
        assert not_audio.json()["error"]["code"] == "undecodable_audio"
        assert not_audio.json()["error"]["param"] == "file"
        empty = await client.post("/jobs", files={"file": ("a.wav", b"")})
        assert empty.status_code == 422
        neither = await client.post("/jobs", data={"language": "en"})
        assert neither.status_code == 400
        translate = await client.post(
            "/jobs",
            files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
            data={"task": "translate"},
        )
        assert translate.status_code == 400
        assert translate.json()["error"]["code"] == "unsupported_option"
        no_gcs = await client.post("/jobs", data={"gcs_uri": "gs://somewhere/x.wav"})
        assert no_gcs.status_code == 400
        assert no_gcs.json()["error"]["code"] == "gcs_bucket_not_allowed"
        for path in (
            "/jobs/job_0123",
            "/jobs/job_..%2F..%2Fjob",
            "/jobs/job_01a2067bc6e3000000000000",
        ):
            missing = await client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] in ("job_not_found", "not_found"), path
        assert (await client.get("/jobs")).json()["data"] == []  # nothing refused was kept
        assert not list((tmp_path / "store").glob("jobs/*"))


async def test_a_job_runs_to_its_result(tmp_path: Path, audio_dir: Path) -> None:
    async with serve(jobs_store=str(tmp_path / "store")) as service:
        accepted = await submit(
            service.client, (audio_dir / "jfk.flac").read_bytes(), response_format="srt"
        )
        assert accepted["status"] == "queued"
        assert accepted["object"] == "transcription.job"
        job = await wait_for_status(service, accepted["id"], "succeeded", "failed")
        assert job["status"] == "succeeded", job["error"]
        assert job["result"]["text"].startswith("The quick brown fox")
        assert job["progress"]["percent"] == 100.0
        assert job["units"] == {"total": 1, "done": 1}
        assert job["attempts"] == 1
        assert job["expires_at"]
        # What only the work needed goes (just after the transition); the result stays.
        folder = tmp_path / "store" / "jobs" / job["id"]
        for _ in range(60):
            names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
            if names == ["job.json", "result.json"]:
                break
            await asyncio.sleep(0.05)
        assert names == ["job.json", "result.json"]
        srt = await service.client.get(job["result_url"])
        assert srt.headers["content-type"].startswith("application/x-subrip")
        verbose = await service.client.get(
            job["result_url"], params={"response_format": "verbose_json"}
        )
        assert set(verbose.json()) == {"text", "task", "language", "duration", "segments"}


async def test_cancel_a_queued_and_a_running_job(tmp_path: Path, audio_dir: Path) -> None:
    release = threading.Event()
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve(FakeEngine(hold=release), jobs_store=str(tmp_path / "store")) as service:
        client = service.client
        first = await submit(client, audio)
        running = await wait_for_status(service, first["id"], "running")
        while running["units"]["total"] is None:  # planned: its unit is next, and holds
            await asyncio.sleep(0.05)
            running = (await client.get(first["status_url"])).json()
        await asyncio.sleep(0.2)
        second = await submit(client, audio)  # waits: one delivery at a time here
        await asyncio.sleep(0.3)
        assert (await client.get(second["status_url"])).json()["status"] == "queued"
        jobs = (await client.get("/health")).json()["jobs"]
        assert jobs["running"] == 1
        assert jobs["queue"] == "local"
        assert jobs["store"] == str(tmp_path / "store")

        cancelled = await client.delete(second["status_url"])
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["error"]["code"] == "cancelled"
        stopping = await client.delete(first["status_url"])
        assert stopping.status_code == 200
        assert stopping.json()["status"] == "cancelled"
        again = await client.delete(first["status_url"])
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "job_finished"
        result = await client.get(f"{first['status_url']}/result")
        assert result.status_code == 409
        assert result.json()["error"]["code"] == "job_not_succeeded"
        # The running unit stopped at once (its token), without waiting for the engine.
        await until_idle(service)
        release.set()


async def test_a_job_is_visible_to_its_own_api_key_only(tmp_path: Path, audio_dir: Path) -> None:
    alice, bob = "alice-" + "a" * 32, "bob-" + "b" * 32
    as_alice, as_bob = {"X-API-Key": alice}, {"X-API-Key": bob}
    async with serve(jobs_store=str(tmp_path / "store"), api_keys=f"{alice},{bob}") as service:
        client = service.client
        accepted = await client.post(
            "/jobs",
            files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
            headers=as_alice,
        )
        assert accepted.status_code == 202
        status_url = accepted.json()["status_url"]
        assert (await client.get(status_url, headers=as_alice)).status_code == 200
        for method in ("GET", "DELETE"):
            other = await client.request(method, status_url, headers=as_bob)
            assert other.status_code == 404, method
            assert other.json()["error"]["code"] == "job_not_found"
        assert (await client.get("/jobs", headers=as_bob)).json()["data"] == []
        mine = (await client.get("/jobs", headers=as_alice)).json()["data"]
        assert [j["id"] for j in mine] == [accepted.json()["id"]]
        assert "client" not in mine[0]  # the key's id is never shown
        assert (await client.get(status_url)).status_code == 401


async def test_jobs_need_a_store() -> None:
    async with serve(jobs_store=None) as service:
        response = await service.client.get("/jobs")
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "jobs_not_configured"


async def test_a_job_waits_while_the_memory_guard_is_on(tmp_path: Path, audio_dir: Path) -> None:
    engine = FakeEngine()
    async with serve(
        engine,
        jobs_store=str(tmp_path / "store"),
        health_memory_degraded_percent=0,
        health_memory_unhealthy_percent=0.5,  # always "short of memory"
        health_sample_interval_seconds=0.5,
    ) as service:
        accepted = await submit(service.client, (audio_dir / "jfk.flac").read_bytes())
        job = await wait_for_status(service, accepted["id"], "running")
        await asyncio.sleep(1.5)
        job = (await service.client.get(f"/jobs/{accepted['id']}")).json()
        assert job["status"] == "running"
        assert job["progress"]["windows_done"] == 0  # no batch started under memory pressure
        assert engine.calls == 0
        assert (await service.client.delete(accepted["status_url"])).status_code == 200
        job = await wait_for_status(service, accepted["id"], "cancelled")
        assert job["status"] == "cancelled"


class BrokenEngine(FakeEngine):
    """An engine that fails in a way nothing expects."""

    def transcribe_windows(self, *args: object, **kwargs: object) -> Any:
        raise RuntimeError("an engine bug")


async def test_a_job_that_breaks_unexpectedly_ends_failed(tmp_path: Path, audio_dir: Path) -> None:
    async with serve(BrokenEngine(), jobs_store=str(tmp_path / "store")) as service:
        accepted = await submit(service.client, (audio_dir / "jfk.flac").read_bytes())
        job = await wait_for_status(service, accepted["id"], "failed", "succeeded")
        # Not given back to the queue, to be retried on every instance.
        assert job["status"] == "failed"
        assert job["error"]["code"] == "internal_error"
        assert "an engine bug" not in job["error"]["message"]
        assert job["attempts"] == 1
        await until_idle(service)


async def until_idle(service: InProcess) -> None:
    """The delivery's slot is released just after its job's final transition."""
    for _ in range(60):
        if not (await service.client.get("/health")).json()["jobs"]["running"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("a job delivery still holds its slot")


async def test_a_job_too_long_for_the_audio_budget_fails_with_the_reason(
    tmp_path: Path, audio_dir: Path
) -> None:
    long = (audio_dir / "long" / "gwbush_radio_address_2008-11-01.wav").read_bytes()
    async with serve(jobs_store=str(tmp_path / "store"), audio_memory_mib=1) as service:
        accepted = await submit(service.client, long)
        job = await wait_for_status(service, accepted["id"], "failed", "succeeded")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "audio_too_long"
    assert "holds at most 1 MiB" in job["error"]["message"]
