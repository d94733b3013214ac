"""The directory store's compare-and-swap and layout, records' transitions, chunking
into windows and units, and the local queue's retries, on a real directory store and
real audio."""

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
from whisper_service.config import SettingsError, load_settings
from whisper_service.jobs import transitions
from whisper_service.jobs.chunking import plan_units, plan_windows
from whisper_service.jobs.dispatch import Delivery, LocalQueue, Retry
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.objects import Conflict, LocalObjects
from whisper_service.jobs.records import (
    Job,
    JobError,
    JobOptions,
    JobSource,
    JobStatus,
    Window,
    new_job_id,
)
from whisper_service.jobs.store import DirectoryStore, JobNotFound, expiry


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
    store = DirectoryStore(LocalObjects(tmp_path / "store"))
    job = make_job()
    store.create(job)

    def worker() -> None:
        for _ in range(25):
            store.update(job.id, lambda j: transitions.delivered(j, "plan"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get(job.id)
    assert final is not None
    assert final.deliveries == {"plan": 100}


def test_ending_a_job_drops_its_work_and_active_marker_and_keeps_the_result(
    tmp_path: Path,
) -> None:
    objects = LocalObjects(tmp_path / "store")
    store, files = DirectoryStore(objects), JobFiles(objects)
    job = make_job()
    (tmp_path / "in.wav").write_bytes(b"RIFF....")
    with (tmp_path / "in.wav").open("rb") as upload:
        files.put_input(job.id, upload)
    store.create(job)
    files.put_unit_audio(job.id, 0, np.zeros(1600, dtype=np.float32))
    assert [j.id for j in store.unfinished()] == [job.id]
    ended = store.update(
        job.id,
        lambda j: transitions.ended(j, JobStatus.FAILED, JobError(code="x", message="y"), 60),
    )
    assert ended.expires_at is not None
    files.discard_work(job.id)
    assert store.unfinished() == []
    assert objects.names(f"jobs/{job.id}/") == [f"jobs/{job.id}/job.json"]
    # Ending is one transition: a second attempt changes nothing and says so.
    again = store.update(job.id, lambda j: transitions.ended(j, JobStatus.SUCCEEDED, None, 60))
    assert again.status is JobStatus.FAILED


def test_ids_sort_by_creation_and_only_well_formed_ones_reach_the_store(tmp_path: Path) -> None:
    earlier, later = old_id(1), new_job_id()
    assert sorted([later, earlier]) == [earlier, later]
    assert abs(int(later.removeprefix("job_")[:12], 16) / 1000 - time.time()) < 5
    store = DirectoryStore(LocalObjects(tmp_path / "store"))
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


def test_units_group_windows_within_the_unit_length() -> None:
    windows = [Window(start=10.0 * i, end=10.0 * i + 8) for i in range(10)]
    units = plan_units(windows, 30.0)
    assert [len(u.windows) for u in units] == [3, 3, 3, 1]
    assert all(u.end - u.start <= 30.0 for u in units)
    assert [w for u in units for w in u.windows] == windows
    assert sum(w.end - w.start for w in units[0].windows) == pytest.approx(24.0)
    assert plan_units([Window(start=0, end=30)], 10.0)[0].windows == [Window(start=0, end=30)]


def test_unit_audio_round_trips_as_16_bit_pcm(tmp_path: Path, long_samples: np.ndarray) -> None:
    files = JobFiles(LocalObjects(tmp_path / "store"))
    piece = long_samples[: SAMPLE_RATE * 5]
    files.put_unit_audio("job_x", 0, piece)
    back = files.get_unit_audio("job_x", 0)
    assert back is not None
    assert back.dtype == np.float32
    assert np.max(np.abs(back - piece)) < 1e-4
    assert files.get_unit_audio("job_x", 1) is None


def test_settings_for_jobs_name_what_is_missing() -> None:
    assert load_settings(jobs_store="").jobs_store is None
    for bad in ("jobs", "gs://my-bucket/jobs", "s3://bucket"):
        with pytest.raises(SettingsError, match="WHISPER_JOBS_STORE"):
            load_settings(jobs_store=bad)
    with pytest.raises(SettingsError, match="needs WHISPER_JOBS_FILES"):
        load_settings(jobs_store="firestore")
    with pytest.raises(SettingsError, match="WHISPER_JOBS_FILES"):
        load_settings(jobs_store="firestore", jobs_files="gs://UPPER/x")
    pubsub = {"jobs_store": "/tmp/x", "jobs_queue": "pubsub"}
    with pytest.raises(SettingsError, match="needs WHISPER_PUBSUB_TOPIC"):
        load_settings(**pubsub)
    topics = {
        "pubsub_topic": "projects/my-project/topics/jobs",
        "pubsub_dead_letter_topic": "projects/my-project/topics/jobs-dead",
    }
    shared = {"pubsub_push_token": "t" * 32, "app_env": "development"}
    with pytest.raises(SettingsError, match="PUSH_AUDIENCE"):
        load_settings(**pubsub, **topics)
    with pytest.raises(SettingsError, match="needs WHISPER_JOBS_STORE"):
        load_settings(**pubsub | {"jobs_store": ""}, **topics, **shared)
    with pytest.raises(SettingsError, match="at least 5"):
        load_settings(**pubsub, **topics, **shared, jobs_max_attempts=3)
    with pytest.raises(SettingsError, match="WHISPER_PUBSUB_TOPIC"):
        load_settings(**pubsub, **topics | {"pubsub_topic": "jobs"}, **shared)
    assert load_settings(**pubsub, **topics, **shared).jobs_queue == "pubsub"


def test_the_directory_store_lists_newest_first_and_expires(tmp_path: Path) -> None:
    store = DirectoryStore(LocalObjects(tmp_path / "store"))
    older, newer, others = make_job(old_id(1), client="a"), make_job(client="a"), make_job()
    for job in (older, newer, others):
        store.create(job)
    assert [j.id for j in store.recent("a", None, 10)] == [newer.id, older.id]
    assert [j.id for j in store.recent("a", None, 1)] == [newer.id]
    assert store.recent("a", JobStatus.SUCCEEDED, 10) == []
    store.update(older.id, lambda j: transitions.ended(j, JobStatus.SUCCEEDED, None, 60))
    assert store.expire(time.time()) == []
    assert store.expire(time.time() + 120) == [older.id]
    assert store.get(older.id) is None
    with pytest.raises(JobNotFound):
        store.update(older.id, lambda j: j)
    assert not (tmp_path / "store" / "jobs" / older.id).exists()
    assert expiry(60).timestamp() == pytest.approx(time.time() + 60, abs=2)


def test_the_local_queue_retries_with_backoff_then_dead_letters() -> None:
    async def scenario() -> tuple[list[int], list[tuple[str, int]]]:
        tries: list[int] = []
        dead: list[tuple[str, int]] = []
        done = asyncio.Event()
        queue = LocalQueue(consumers=1, max_attempts=3)

        async def handler(delivery: Delivery) -> None:
            tries.append(delivery.unit or 0)
            if delivery.unit == 1:
                raise Retry("always")

        async def dead_letter(delivery: Delivery, attempts: int) -> None:
            dead.append((delivery.piece, attempts))
            done.set()

        queue.start(handler, dead_letter)
        await queue.publish([Delivery(job_id="j", unit=0), Delivery(job_id="j", unit=1)])
        await asyncio.wait_for(done.wait(), 10)
        await queue.close()
        return tries, dead

    tries, dead = asyncio.run(scenario())
    assert tries == [0, 1, 1, 1]
    assert dead == [("1", 3)]


def test_a_delivery_already_tried_as_often_as_allowed_is_dead_lettered_at_once() -> None:
    # A unit that killed its process every time comes back from restart recovery with
    # its attempts used up: it must not run again.
    async def scenario() -> list[tuple[str, int]]:
        dead: list[tuple[str, int]] = []
        queue = LocalQueue(consumers=1, max_attempts=2)

        async def handler(delivery: Delivery) -> None:
            raise AssertionError("must not run")

        async def dead_letter(delivery: Delivery, attempts: int) -> None:
            dead.append((delivery.piece, attempts))

        queue.start(handler, dead_letter)
        queue.put(Delivery(job_id="j"), attempts=2)
        await asyncio.sleep(0.2)
        await queue.close()
        return dead

    assert asyncio.run(scenario()) == [("plan", 2)]


def test_folders_are_one_level(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    for name in ("jobs/b/job.json", "jobs/a/job.json", "jobs/a/input", "active/a"):
        objects.write(name, b"")
    assert objects.folders("jobs/") == ["a", "b"]
    assert objects.folders("nothing/") == []


def test_reading_a_job_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    store, files = DirectoryStore(objects), JobFiles(objects)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for _ in range(3):
        assert store.get(new_job_id()) is None
        assert files.get_result(new_job_id()) is None
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_deleting_what_is_already_gone_is_not_an_error(tmp_path: Path) -> None:
    objects = LocalObjects(tmp_path / "store")
    objects.delete("jobs/job_none/job.json")  # neither the object nor its folder
    files = JobFiles(objects)
    files.discard_work(new_job_id())
    files.discard_work(new_job_id())


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
