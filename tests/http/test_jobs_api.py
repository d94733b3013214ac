"""The /jobs API's own rules: checks before the 202, per-key visibility, the instance
limit, cancelling, no store, the memory guard (in-process, a directory store and a
stand-in engine; jobs across processes, crashes and restarts run against real servers
in tests/integration/test_jobs.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeEngine
from tests.in_process import InProcess, serve

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
        assert service.runtime.jobs is not None
        assert service.runtime.jobs.stats()["held"] == 0  # nothing refused was kept


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
        srt = await service.client.get(job["result_url"])
        assert srt.headers["content-type"].startswith("application/x-subrip")
        verbose = await service.client.get(
            job["result_url"], params={"response_format": "verbose_json"}
        )
        assert set(verbose.json()) == {"text", "task", "language", "duration", "segments"}


async def test_cancel_a_queued_job_and_the_instance_limit(tmp_path: Path, audio_dir: Path) -> None:
    release = threading.Event()
    audio = (audio_dir / "jfk.flac").read_bytes()
    async with serve(
        FakeEngine(hold=release), jobs_store=str(tmp_path / "store"), jobs_max_active=2
    ) as service:
        client = service.client
        first = await submit(client, audio)
        second = await submit(client, audio)
        third = await client.post("/jobs", files={"file": ("a.flac", audio)})
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "jobs_full"
        assert third.headers["retry-after"]
        jobs = (await client.get("/health")).json()["jobs"]
        assert jobs["held"] == 2
        assert jobs["max_active"] == 2
        assert jobs["store"] == str(tmp_path / "store")

        cancelled = await client.delete(second["status_url"])
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["error"]["code"] == "cancelled"
        running = await wait_for_status(service, first["id"], "running")
        assert running["status"] == "running"
        stopping = await client.delete(first["status_url"])
        assert stopping.status_code in (200, 202)
        job = await wait_for_status(service, first["id"], "cancelled")
        assert job["status"] == "cancelled"
        again = await client.delete(first["status_url"])
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "job_finished"
        result = await client.get(f"{first['status_url']}/result")
        assert result.status_code == 409
        assert result.json()["error"]["code"] == "job_not_succeeded"
        assert (await client.get("/health")).json()["jobs"]["held"] == 0
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
        # Not left running until its lease ran out, to be retried on every instance.
        assert job["status"] == "failed"
        assert job["error"]["code"] == "internal_error"
        assert "an engine bug" not in job["error"]["message"]
        assert job["attempts"] == 1
        assert (await service.client.get("/health")).json()["jobs"]["held"] == 0


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
