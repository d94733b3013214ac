"""Jobs spread over three instances on the platform's own engines, run for real: Google's
Pub/Sub emulator pushes every unit through a least-busy balancer to three `serve`
processes, records live in the Firestore emulator, files in gcp-storage-emulator.

Nothing is mocked: the servers use the real client libraries, which the
*_EMULATOR_HOST variables point at the emulators.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
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
from tests.support.balancer import Balancer
from tests.support.google_emulators import GcpEmulators
from tests.support.job_fleet import (
    MAX_ATTEMPTS,
    PUSH_TOKEN,
    UNIT_SETTINGS,
    assert_timeline,
    fleet_env,
    submit,
    wait_for,
)
from tests.support.media import repeated_wav
from tests.support.storage_emulator import Emulator
from whisper_service.config import load_settings
from whisper_service.engines.base import Segment
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.firestore_store import FirestoreStore
from whisper_service.jobs.merge import Merger
from whisper_service.jobs.objects import LocalObjects
from whisper_service.jobs.records import (
    Job,
    JobOptions,
    JobSource,
    JobStatus,
    Plan,
    Unit,
    UnitCheckpoint,
    UnitSpec,
    Window,
    new_job_id,
)
from whisper_service.jobs.store import Additions
from whisper_service.storage import GcsStorage


@dataclass
class Cluster:
    """Three instances behind one push subscription."""

    instances: list[LiveServer]
    balancer: Balancer
    topic: str
    collection: str
    files: str

    @property
    def url(self) -> str:
        """Any instance will do for the API: they share everything."""
        return next(i for i in self.instances if i.process and i.process.poll() is None).url

    def events(self, message: str, job_id: str) -> dict[int, list[dict[str, Any]]]:
        """``message`` log events about ``job_id``, per instance port."""
        return {
            i.port: [
                e
                for e in i.log_events()
                if e.get("message") == message and e.get("job_id") == job_id
            ]
            for i in self.instances
        }


def start_all(servers: list[LiveServer]) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: s.start(), servers))


@pytest.fixture(scope="module")
def cluster(
    gcp: GcpEmulators, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("cluster")
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    emulator.client().create_bucket(name)
    env = fleet_env(gcp, emulator.url, name)
    instances = [LiveServer(logs, **env) for _ in range(3)]
    balancer = Balancer([i.port for i in instances])
    gcp.create_subscriptions(
        name,
        f"{balancer.url}/internal/jobs/units?token={PUSH_TOKEN}",
        f"{balancer.url}/internal/jobs/dead-letters?token={PUSH_TOKEN}",
        MAX_ATTEMPTS,
    )
    try:
        start_all(instances)
        yield Cluster(
            instances, balancer, env["WHISPER_PUBSUB_TOPIC"], name, env["WHISPER_JOBS_FILES"]
        )
    finally:
        for instance in instances:
            instance.stop()
        balancer.stop()


@pytest.fixture(scope="module")
def single_instance_text(
    audio_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same job on one instance with the offline backends (the reference)."""
    logs = tmp_path_factory.mktemp("single")
    with running(logs, WHISPER_JOBS_STORE=str(logs / "store"), **UNIT_SETTINGS) as server:
        accepted = submit(server.url, audio_dir / LONG_AUDIO, language="en")
        job = wait_for(server.url, accepted["id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded", job["error"]
    result: dict[str, Any] = job["result"]
    return result


def test_three_instances_share_one_long_recording(
    cluster: Cluster, audio_dir: Path, single_instance_text: dict[str, Any]
) -> None:
    accepted = submit(cluster.url, audio_dir / LONG_AUDIO, language="en")
    job = wait_for(cluster.url, accepted["id"], ("succeeded", "failed"))
    assert job["status"] == "succeeded", job["error"]
    assert job["units"]["done"] == job["units"]["total"] >= 4

    done = cluster.events("job_unit_done", accepted["id"])
    units_by_instance = {port: sorted(e["unit"] for e in found) for port, found in done.items()}
    print(f"\nunits per instance: {units_by_instance}")
    assert all(units_by_instance.values()), f"an instance did no unit: {units_by_instance}"
    every_unit = sorted(u for units in units_by_instance.values() for u in units)
    assert every_unit == list(range(job["units"]["total"]))
    time.sleep(1)  # the merging instance logs just after the transition it made
    merged = cluster.events("job_merged", accepted["id"])
    assert sum(len(found) for found in merged.values()) == 1

    result = job["result"]
    assert_transcript(result["text"], LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)
    difference = pooled_wer([single_instance_text["text"]], [result["text"]])
    print(f"word difference, three instances vs one: {difference:.4f}")
    assert difference < 0.01
    assert len(result["segments"]) == len(single_instance_text["segments"])
    assert_timeline(result["segments"], job["progress"]["audio_seconds_total"])

    listed = httpx.get(f"{cluster.url}/jobs", params={"status": "succeeded"}, timeout=10)
    assert accepted["id"] in [j["id"] for j in listed.json()["data"]]


def test_a_forged_push_is_refused_and_runs_nothing(cluster: Cluster, audio_dir: Path) -> None:
    accepted = submit(cluster.url, audio_dir / "jfk.flac")
    job = wait_for(cluster.url, accepted["id"], ("succeeded", "failed"))
    body = {
        "message": {
            "data": base64.b64encode(json.dumps({"job_id": job["id"], "unit": 0}).encode()).decode()
        },
        "subscription": "projects/whisper-test/subscriptions/forged",
    }
    target = cluster.instances[0].url

    def deliveries() -> int:
        return sum(len(f) for f in cluster.events("job_delivery_started", job["id"]).values())

    before = deliveries()
    for query, status in (("", 401), ("?token=guess", 403)):
        forged = httpx.post(f"{target}/internal/jobs/units{query}", json=body, timeout=10)
        assert forged.status_code == status, forged.text
        dead = httpx.post(f"{target}/internal/jobs/dead-letters{query}", json=body, timeout=10)
        assert dead.status_code == status, dead.text
    after = httpx.get(f"{cluster.url}/jobs/{job['id']}", timeout=10).json()
    assert after["status"] == "succeeded"
    assert after["attempts"] == job["attempts"]
    assert deliveries() == before


def test_a_unit_that_always_fails_is_dead_lettered_and_fails_its_job(
    cluster: Cluster, gcp: GcpEmulators, emulator: Emulator
) -> None:
    # A planned job whose unit audio is gone: every delivery of that unit fails.
    from whisper_service.jobs.dispatch import Delivery, PubSubQueue
    from whisper_service.jobs.objects import GcsObjects

    store = FirestoreStore(gcp.firestore_client(), cluster.collection)
    files = JobFiles(GcsObjects(cluster.files, emulator.client(), 30))
    job = Job(
        id=new_job_id(),
        source=JobSource(kind="upload", filename="lost.wav"),
        options=JobOptions(language="en"),
        status=JobStatus.RUNNING,
        units_total=1,
    )
    unit = Unit(start=0, end=10, windows=[Window(start=0, end=10)])
    files.put_plan(job.id, Plan(duration=10, language="en", units=[unit]))
    files.put_unit_spec(job.id, 0, UnitSpec(unit=unit, language="en"))
    store.create(job)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PUBSUB_EMULATOR_HOST", gcp.pubsub.host)
        asyncio.run(PubSubQueue(cluster.topic).publish([Delivery(job_id=job.id, unit=0)]))

    failed = wait_for(cluster.url, job.id, ("failed", "succeeded"), timeout=90)
    assert failed["error"]["code"] == "job_delivery_failed"
    assert failed["error"]["message"].startswith(f"unit 0 failed on all {MAX_ATTEMPTS} deliveries")
    retries = [e for found in cluster.events("job_delivery_retry", job.id).values() for e in found]
    assert len(retries) >= MAX_ATTEMPTS
    assert all("audio of unit 0 is missing" in str(e["reason"]) for e in retries)


def test_a_cancel_stops_every_instances_units(
    cluster: Cluster, audio_dir: Path, tmp_path: Path
) -> None:
    long = repeated_wav(audio_dir / LONG_AUDIO, 4, tmp_path / "long-x4.wav")  # 8.5 minutes
    accepted = submit(cluster.url, long, language="en")
    job_id = accepted["id"]
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up:
        started = cluster.events("job_delivery_started", job_id)
        busy = [p for p, found in started.items() if any(e["piece"] != "plan" for e in found)]
        if len(busy) >= 2:
            break
        time.sleep(0.1)
    cancelled = httpx.delete(f"{cluster.url}/jobs/{job_id}", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    at_cancel = cancelled.json()["units"]

    # Within a window's time every instance has stopped: none runs a delivery any more.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [httpx.get(f"{i.url}/health", timeout=10).json()["jobs"]["running"]
                   for i in cluster.instances]  # fmt: skip
        if not any(running):
            break
        time.sleep(0.2)
    assert not any(running), running
    time.sleep(3)  # deliveries still queued in Pub/Sub arrive and are acked unworked
    after = httpx.get(f"{cluster.url}/jobs/{job_id}", timeout=10).json()
    assert after["status"] == "cancelled"
    assert after["units"]["done"] <= at_cancel["done"] + 3  # at most each one's last batch
    assert after["units"]["done"] < after["units"]["total"]
    stopped = cluster.events("job_delivery_stopped", job_id)
    skipped = cluster.events("job_delivery_skipped", job_id)
    print(f"\nunits at cancel: {at_cancel}; stopped mid-unit per instance: "
          f"{ {p: len(v) for p, v in stopped.items()} }; acked unworked: "
          f"{sum(len(v) for v in skipped.values())}")  # fmt: skip
    assert sum(len(v) for v in stopped.values()) + sum(len(v) for v in skipped.values()) >= 2


def test_two_units_finishing_together_merge_once(gcp: GcpEmulators, tmp_path: Path) -> None:
    # Two deliveries completing one job at the same moment (the last unit, and a
    # redelivery of it after a lost ack): both merge, one transition wins.
    settings = load_settings(app_env="development")
    store = FirestoreStore(gcp.firestore_client(), f"merge-{uuid.uuid4().hex[:8]}")
    files = JobFiles(LocalObjects(tmp_path / "files"))
    merger = Merger(settings, store, files, GcsStorage(settings))
    plan = Plan(duration=20, units=[Unit(start=10.0 * n, end=10.0 * n + 10, windows=[
        Window(start=10.0 * n, end=10.0 * n + 10)]) for n in range(2)])  # fmt: skip
    for round_ in range(5):
        job = Job(id=new_job_id(), source=JobSource(kind="upload"), options=JobOptions(),
                  status=JobStatus.RUNNING, units_total=2, units_done=[0, 1])  # fmt: skip
        store.create(job)
        files.put_plan(job.id, plan)
        for number in range(2):
            segment = Segment(number, 0, 10.0 * number, 10.0 * number + 5, f" part {number}.",
                              [], 0.0, -0.1, 1.0, 0.01)  # fmt: skip
            files.put_checkpoint(job.id, number, UnitCheckpoint(windows_done=1, segments=[segment]))
        barrier = threading.Barrier(2)
        won: list[bool] = []

        def merge(job: Job, barrier: threading.Barrier, won: list[bool]) -> None:
            barrier.wait()
            won.append(asyncio.run(merger.merge(job, plan)))

        threads = [threading.Thread(target=merge, args=(job, barrier, won)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = store.get(job.id)
        assert final is not None
        assert final.status is JobStatus.SUCCEEDED, round_
        result = files.get_result(job.id)
        assert result is not None
        assert result.text == "part 0. part 1."
        assert [s.id for s in result.segments] == [0, 1]
        assert sorted(won) == [False, True], round_


def test_additions_from_instances_at_once_are_never_lost(gcp: GcpEmulators) -> None:
    # Units on many instances add to one record without a transaction (field
    # transforms): nothing may be lost, and a unit stored twice counts once.
    store = FirestoreStore(gcp.firestore_client(), f"adds-{uuid.uuid4().hex[:8]}")
    job = Job(id=new_job_id(), source=JobSource(kind="upload"), options=JobOptions())
    store.create(job)
    barrier = threading.Barrier(4)

    def instance(number: int) -> None:
        barrier.wait()
        for _ in range(10):
            store.add(job.id, Additions(deliveries={str(number): 1}, windows=1, audio_seconds=0.5))
        store.add(job.id, Additions(units_done=(number,)))
        store.add(job.id, Additions(units_done=(number,)))  # a redelivery

    threads = [threading.Thread(target=instance, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get(job.id)
    assert final is not None
    assert final.deliveries == {str(n): 10 for n in range(4)}
    assert sorted(final.units_done) == [0, 1, 2, 3]
    assert final.progress.windows_done == 40
    assert final.progress.audio_seconds_done == pytest.approx(20.0)


def mid_first_unit(cluster: Cluster, instance: LiveServer, job_id: str) -> bool:
    """Whether ``instance`` has begun a unit of the job and finished none."""
    started = cluster.events("job_delivery_started", job_id)[instance.port]
    units = [e for e in started if e["piece"] != "plan"]
    return bool(units) and not cluster.events("job_unit_done", job_id)[instance.port]


def stop_mid_first_unit(
    cluster: Cluster, job_id: str
) -> tuple[LiveServer, list[psutil.Process]] | None:
    """An instance in the middle of its first unit of the job, stopped (SIGSTOP, its
    whole process tree), or None. Stopped, then looked at again: a unit that ended
    between the look and a kill would leave nothing to deliver again."""
    for instance in cluster.instances:
        if not mid_first_unit(cluster, instance, job_id):
            continue
        assert instance.process is not None
        tree = psutil.Process(instance.process.pid)
        processes = [*tree.children(recursive=True), tree]
        for process in processes:
            process.suspend()
        if mid_first_unit(cluster, instance, job_id):
            return instance, processes
        for process in processes:
            process.resume()
    return None


def test_sigkill_of_an_instance_mid_unit_loses_nothing(
    cluster: Cluster, audio_dir: Path, single_instance_text: dict[str, Any]
) -> None:
    # Last in this module: the instance killed here stays dead.
    accepted = submit(cluster.url, audio_dir / LONG_AUDIO, language="en")
    job_id = accepted["id"]
    give_up = time.monotonic() + 120
    stopped = None
    while stopped is None and time.monotonic() < give_up:
        stopped = stop_mid_first_unit(cluster, job_id)
        time.sleep(0.05)
    assert stopped is not None
    victim, processes = stopped
    assert victim.process is not None
    # The whole instance at once, gunicorn's master and its worker: a lost machine.
    for process in processes:
        process.kill()
    victim.process.wait()
    survivors = [i for i in cluster.instances if i is not victim]

    job = wait_for(survivors[0].url, job_id, ("succeeded", "failed"), timeout=240)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] >= 2, "the killed unit was not delivered again"
    result = job["result"]
    difference = pooled_wer([single_instance_text["text"]], [result["text"]])
    print(f"\nafter SIGKILL mid-unit: attempts {job['attempts']}, word difference {difference:.4f}")
    assert difference < 0.01
    assert len(result["segments"]) == len(single_instance_text["segments"])
    assert_timeline(result["segments"], job["progress"]["audio_seconds_total"])
