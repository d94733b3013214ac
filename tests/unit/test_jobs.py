"""The job store's compare-and-swap, its layout, chunking and the sweep's decisions,
on a real directory store and real audio."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support import LONG_AUDIO
from whisper_service.audio import SAMPLE_RATE, decode_audio
from whisper_service.config import Settings, SettingsError, load_settings
from whisper_service.jobs.chunking import plan_windows
from whisper_service.jobs.objects import Conflict, LocalObjects
from whisper_service.jobs.records import (
    Job,
    JobError,
    JobOptions,
    JobSource,
    JobStatus,
    created_at_of,
    new_job_id,
)
from whisper_service.jobs.runner import JobRunner
from whisper_service.jobs.store import JobStore
from whisper_service.serving.memory import AudioMemory
from whisper_service.serving.scheduler import Scheduler
from whisper_service.storage import GcsStorage


def make_job(job_id: str | None = None, **fields: object) -> Job:
    return Job(
        id=job_id or new_job_id(),
        source=JobSource(kind="gcs", uri="gs://b/x.wav"),
        options=JobOptions(),
        **fields,
    )


def old_id(days: float) -> str:
    return f"job_{int((time.time() - days * 86_400) * 1000):012x}{os.urandom(6).hex()}"


def test_writes_are_compare_and_swap(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    first = objects.write("a/x.json", b"1", if_generation=0)
    with pytest.raises(Conflict):
        objects.write("a/x.json", b"2", if_generation=0)  # exists already
    second = objects.write("a/x.json", b"2", if_generation=first)
    assert second != first
    with pytest.raises(Conflict):
        objects.write("a/x.json", b"3", if_generation=first)  # stale
    assert objects.read("a/x.json") == (b"2", second)
    assert objects.read("a/missing") is None
    assert objects.names("a/") == ["a/x.json"]
    objects.delete("a/x.json")
    assert objects.names("") == []
    with pytest.raises(ValueError, match="escapes"):
        objects.read("../outside")


def test_a_store_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable only by it"):
        LocalObjects(shared)


def test_concurrent_updates_are_never_lost(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    job = make_job()
    store.create(job)

    def worker() -> None:
        for _ in range(25):
            store.update(job.id, lambda j: j.model_copy(update={"attempts": j.attempts + 1}))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get(job.id)
    assert final is not None
    assert final.attempts == 100


def test_ending_a_job_drops_its_input_checkpoint_and_active_marker(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    job = make_job()
    (tmp_path / "in.wav").write_bytes(b"RIFF....")
    with (tmp_path / "in.wav").open("rb") as upload:
        store.create(job, upload)
    assert store.active_ids() == [job.id]
    assert store.objects.names(f"jobs/{job.id}/") == [
        f"jobs/{job.id}/input",
        f"jobs/{job.id}/job.json",
    ]

    def fail(j: Job) -> Job:
        j.status, j.error = JobStatus.FAILED, JobError(code="x", message="y")
        return j

    store.update(job.id, fail)
    assert store.active_ids() == []
    assert store.objects.names(f"jobs/{job.id}/") == [f"jobs/{job.id}/job.json"]


def test_ids_sort_by_creation_and_only_well_formed_ones_reach_the_store(tmp_path: Path) -> None:
    earlier, later = old_id(1), new_job_id()
    assert sorted([later, earlier]) == [earlier, later]
    created = created_at_of(later)
    assert created is not None
    assert abs(created - time.time()) < 5
    store = JobStore(LocalObjects(tmp_path / "store"))
    for bad in ("job_", "../job.json", "job_zz" + "0" * 22, later + "0", "job_../../x"):
        assert store.get(bad) is None


@pytest.fixture(scope="module")
def long_samples(audio_dir: Path) -> np.ndarray:
    samples: np.ndarray = decode_audio(audio_dir / LONG_AUDIO, max_seconds=600).samples
    return samples


def test_vad_windows_cut_at_pauses_within_30_s(long_samples: np.ndarray) -> None:
    windows = plan_windows(long_samples, "vad")
    assert len(windows) >= 5
    for before, after in itertools.pairwise(windows):
        assert before.end <= after.start
    assert all(0 < w.end - w.start <= 30.0 for w in windows)
    duration = len(long_samples) / SAMPLE_RATE
    assert windows[0].start < 1.0
    assert windows[-1].end > duration - 2


def test_fixed_windows_tile_the_audio(long_samples: np.ndarray) -> None:
    windows = plan_windows(long_samples, "fixed")
    duration = len(long_samples) / SAMPLE_RATE
    assert [w.start for w in windows] == [30.0 * i for i in range(len(windows))]
    assert windows[-1].end == pytest.approx(duration)


def test_silence_gives_no_vad_windows() -> None:
    assert plan_windows(np.zeros(SAMPLE_RATE * 40, dtype=np.float32), "vad") == []


def test_store_setting_is_a_bucket_or_an_absolute_path() -> None:
    assert load_settings(jobs_store="gs://my-bucket/jobs").jobs_store == "gs://my-bucket/jobs"
    assert load_settings(jobs_store="").jobs_store is None
    for bad in ("jobs", "gs://UPPER/x", "s3://bucket"):
        with pytest.raises(SettingsError, match="WHISPER_JOBS_STORE"):
            load_settings(jobs_store=bad)


def sweep_once(settings: Settings, store: JobStore) -> JobRunner:
    async def scenario() -> JobRunner:
        runner = JobRunner(
            settings,
            store,
            Scheduler(workers=1, queue_size=0, queue_timeout=1),
            GcsStorage(settings),
            lambda: None,
            memory_critical=lambda: False,
            audio_memory=AudioMemory(2**30),
        )
        await runner.sweep(expire=True)
        return runner

    return asyncio.run(scenario())


def test_sweep_takes_over_abandoned_and_handed_over_jobs(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    settings = load_settings(app_env="development", jobs_max_interruptions=1)
    dead = make_job(status=JobStatus.RUNNING, instance="gone:1:a", lease_expires_at=time.time() - 1)
    handed = make_job(status=JobStatus.QUEUED)
    alive = make_job(
        status=JobStatus.RUNNING, instance="other:2:b", lease_expires_at=time.time() + 60
    )
    twice = make_job(instance="gone:1:a", lease_expires_at=time.time() - 1, interruptions=1)
    for job in (dead, handed, alive, twice):
        store.create(job)

    runner = sweep_once(settings, store)

    taken = {job_id for job_id in runner._held}
    assert taken == {dead.id, handed.id}
    after_dead = store.get(dead.id)
    assert after_dead is not None
    assert after_dead.instance == runner.instance
    assert after_dead.interruptions == 1
    after_handed = store.get(handed.id)
    assert after_handed is not None
    assert after_handed.interruptions == 0
    untouched = store.get(alive.id)
    assert untouched is not None
    assert untouched.instance == "other:2:b"
    failed = store.get(twice.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "interrupted"


def test_sweep_deletes_jobs_past_retention_only(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    settings = load_settings(app_env="development", jobs_retention_seconds=86_400)
    long_done = make_job(
        old_id(3), status=JobStatus.SUCCEEDED, finished_at=time.time() - 2 * 86_400
    )
    just_done = make_job(old_id(3), status=JobStatus.SUCCEEDED, finished_at=time.time() - 60)
    recent = make_job(status=JobStatus.SUCCEEDED, finished_at=time.time())
    for job in (long_done, just_done, recent):
        store.create(job)
    sweep_once(settings, store)
    assert store.get(long_done.id) is None
    assert store.objects.names(f"jobs/{long_done.id}/") == []
    assert store.get(just_done.id) is not None
    assert store.get(recent.id) is not None


def test_a_marker_without_a_record_is_debris_only_once_old(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    being_created, debris = new_job_id(), old_id(1)
    for job_id in (being_created, debris):
        store.objects.write(f"active/{job_id}", b"")  # as create() does before the record
    sweep_once(load_settings(app_env="development"), store)
    assert store.active_ids() == [being_created]


def test_folders_are_one_level(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    for name in ("jobs/b/job.json", "jobs/a/job.json", "jobs/a/input", "active/a"):
        objects.write(name, b"")
    assert objects.folders("jobs/") == ["a", "b"]
    assert objects.folders("nothing/") == []


def test_reading_a_job_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for _ in range(3):
        assert store.get(new_job_id()) is None
        assert store.read_result(new_job_id()) is None
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_deleting_what_is_already_gone_is_not_an_error(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    objects.delete("jobs/job_none/job.json")  # neither the object nor its folder
    store = JobStore(objects)
    job = make_job()
    store.create(job)
    store.delete(job.id)
    store.delete(job.id)  # twice
    assert not (tmp_path / "store" / "jobs" / job.id).exists()  # the folder went too


def test_retention_skips_a_job_it_cannot_delete_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(LocalObjects(tmp_path / "store"))
    old = [
        make_job(old_id(3), status=JobStatus.SUCCEEDED, finished_at=time.time() - 2 * 86_400)
        for _ in range(3)
    ]
    for job in old:
        store.create(job)
    stuck = sorted(j.id for j in old)[0]
    delete = store.delete

    def failing_delete(job_id: str) -> None:
        if job_id == stuck:
            raise PermissionError(13, "Permission denied")
        delete(job_id)

    monkeypatch.setattr(store, "delete", failing_delete)
    sweep_once(load_settings(app_env="development", jobs_retention_seconds=86_400), store)
    assert [store.get(j.id) is not None for j in sorted(old, key=lambda j: j.id)] == [
        True,
        False,
        False,
    ]


def test_a_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = LocalObjects(tmp_path / "store")
    objects.write("jobs/a/job.json", b"{}", 0)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        objects.write("jobs/a/job.json", b"{changed}", 1)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "store" / "jobs" / "a").iterdir() if "tmp" in p.name] == []
    assert objects.read("jobs/a/job.json") == (b"{}", 1)


def test_stale_temporaries_of_a_crash_are_removed_at_open(tmp_path: Path) -> None:
    LocalObjects(tmp_path / "store").write("jobs/a/job.json", b"{}", 0)
    stale = tmp_path / "store" / "jobs" / "a" / ".tmp-crashed"
    fresh = tmp_path / "store" / "jobs" / "a" / ".tmp-in-progress"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    LocalObjects(tmp_path / "store")
    assert not stale.exists()
    assert fresh.exists()  # another process may be writing it right now


def test_the_generation_does_not_rest_on_the_modification_time(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    first = objects.write("jobs/a/job.json", b"first", 0)
    stale = objects.read("jobs/a/job.json")
    assert stale == (b"first", first)
    path = tmp_path / "store" / "jobs" / "a" / "job.json"
    mtime = path.stat().st_mtime_ns
    second = objects.write("jobs/a/job.json", b"second", first)
    # A restore that keeps modification times (cp -p, rsync -t) puts the old one back.
    os.utime(path, ns=(mtime, mtime))
    with pytest.raises(Conflict):
        objects.write("jobs/a/job.json", b"stale writer", first)
    assert objects.read("jobs/a/job.json") == (b"second", second)
