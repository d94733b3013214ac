"""`whisper-service batch` as a Cloud Run Job runs it: three task processes with
CLOUD_RUN_TASK_INDEX/COUNT over a bucket of gcp-storage-emulator, one of them
SIGKILLed after its first transcript and run again, as Cloud Run retries a task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support import (
    LONG_AUDIO,
    LONG_AUDIO_MAX_WER,
    LONG_AUDIO_SILVER,
    MODEL_CACHE,
    assert_jfk,
    assert_transcript,
    ljspeech,
)
from tests.support.storage_emulator import Emulator

TASKS = 3


def batch_task(
    index: int, input_uri: str, output_uri: str, emulator: Emulator, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "APP_ENV": "development",
        "STORAGE_EMULATOR_HOST": emulator.url,
        "WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE),
        "WHISPER_CPU_THREADS": "1",
        "WHISPER_LOG_FORMAT": "json",
        "CLOUD_RUN_TASK_INDEX": str(index),
        "CLOUD_RUN_TASK_COUNT": str(TASKS),
    }
    command = [str(Path(sys.executable).with_name("whisper-service")), "batch",
               "--input", input_uri, "--output", output_uri, "--language", "en"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def summary(log: Path) -> dict[str, int]:
    line = [x for x in log.read_text().splitlines() if x.startswith('{"task"')][-1]
    found: dict[str, int] = json.loads(line)
    return found


def test_three_tasks_one_killed_and_rerun(
    emulator: Emulator, audio_dir: Path, tmp_path: Path
) -> None:
    client = emulator.client()
    name = f"batch-{uuid.uuid4().hex[:8]}"
    bucket = client.create_bucket(name)
    # Names decide the shards (sorted, i % 3): task 0 gets JFK, then the 127 s address,
    # so it is killed in the middle of that one.
    lj = ljspeech()[:3]
    speech = {
        "00-jfk.flac": audio_dir / "jfk.flac",
        "01-lj.wav": lj[0].path,
        "03-long.wav": audio_dir / LONG_AUDIO,
        "04-lj.wav": lj[1].path,
        "05-lj.wav": lj[2].path,
    }
    references = {"01-lj.wav": lj[0].reference, "04-lj.wav": lj[1].reference,
                  "05-lj.wav": lj[2].reference, "03-long.wav": LONG_AUDIO_SILVER}  # fmt: skip
    for object_name, path in speech.items():
        bucket.blob(f"in/{object_name}").upload_from_filename(str(path))
    bucket.blob("in/02-broken.wav").upload_from_string(b"RIFF, but not audio" * 50)
    inputs = sorted([*speech, "02-broken.wav"])
    shards = {i: inputs[i::TASKS] for i in range(TASKS)}
    assert shards[0] == ["00-jfk.flac", "03-long.wav"]
    input_uri, output_uri = f"gs://{name}/in/", f"gs://{name}/out/"

    logs = {i: tmp_path / f"task-{i}.log" for i in range(TASKS)}
    tasks = {i: batch_task(i, input_uri, output_uri, emulator, logs[i]) for i in range(TASKS)}
    # Task 0 is killed as soon as its first transcript is stored.
    first = f"out/{shards[0][0]}.json"
    give_up = time.monotonic() + 120
    while not bucket.blob(first).exists() and time.monotonic() < give_up:
        assert tasks[0].poll() is None, logs[0].read_text()
        time.sleep(0.05)
    tasks[0].kill()
    tasks[0].wait()
    for index in (1, 2):
        assert tasks[index].wait(timeout=180) == 0, logs[index].read_text()
    rerun_log = tmp_path / "task-0-rerun.log"
    rerun = batch_task(0, input_uri, output_uri, emulator, rerun_log)
    assert rerun.wait(timeout=180) == 0, rerun_log.read_text()

    again = summary(rerun_log)
    assert again == {"task": 0, "count": TASKS, "done": 1, "skipped": 1, "failed": 0,
                     "retryable": 0}  # fmt: skip
    outputs = sorted(b.name for b in client.list_blobs(name, prefix="out/"))
    transcripts = [o for o in outputs if not o.startswith("out/_failures/")]
    assert transcripts == sorted(f"out/{n}.json" for n in speech)  # each exactly once
    assert_jfk(json.loads(bucket.blob("out/00-jfk.flac.json").download_as_text())["text"])
    for object_name, reference in references.items():
        text = json.loads(bucket.blob(f"out/{object_name}.json").download_as_text())["text"]
        assert_transcript(text, reference, LONG_AUDIO_MAX_WER)

    broken_task = next(i for i, names in shards.items() if "02-broken.wav" in names)
    manifest_name = f"out/_failures/task-{broken_task:05d}-of-{TASKS:05d}.json"
    manifest = json.loads(bucket.blob(manifest_name).download_as_text())
    assert [f["object"] for f in manifest["failed"]] == ["02-broken.wav"]
    assert manifest["failed"][0]["code"] == "undecodable_audio"
    assert manifest["retryable"] == 0
    assert len(manifest["done"]) + len(manifest["skipped"]) == len(shards[broken_task]) - 1


def test_a_task_outside_its_count_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    task = batch_task(5, "gs://x/in/", "gs://x/out/", emulator, log)
    assert task.wait(timeout=60) == 2
    assert "task index 5 is not within the task count 3" in log.read_text()


@pytest.mark.parametrize(
    ("source", "target"), [("gs://bkt/in/", "gs://bkt/in/out/"), ("gs://bkt/", "gs://bkt/out/")]
)
def test_output_inside_input_is_refused(
    emulator: Emulator, tmp_path: Path, source: str, target: str
) -> None:
    log = tmp_path / "nested.log"
    task = batch_task(0, source, target, emulator, log)
    assert task.wait(timeout=60) == 2
    assert "must not be inside" in log.read_text()


def test_inputs_named_like_manifests_or_with_dot_segments_are_refused(
    emulator: Emulator, audio_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.fakes import FakeEngine
    from whisper_service.bulk import BatchRun, Shard
    from whisper_service.config import load_settings

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    name = f"batch-{uuid.uuid4().hex[:8]}"
    bucket = emulator.client().create_bucket(name)
    manifest = "_failures/task-00000-of-00001"  # in/ this maps onto out/'s manifest
    # gcp-storage-emulator cannot store a name with a ".." segment (GCS can): "." here,
    # ".." in name_refusal's own test below.
    hostile = [manifest, "./c.flac", "d/./e.flac"]
    for object_name in ["ok.flac", *hostile]:
        bucket.blob(f"in/{object_name}").upload_from_filename(str(audio_dir / "jfk.flac"))
    settings = load_settings(app_env="development", log_level="WARNING")
    run = BatchRun(settings, FakeEngine(), f"gs://{name}/in/", f"gs://{name}/out/")
    report = run.run(Shard(0, 1))
    assert report.done == ["ok.flac"]
    assert sorted(f["object"] for f in report.failed) == sorted(hostile)
    assert {f["code"] for f in report.failed} == {"invalid_object_name"}
    written = sorted(b.name for b in emulator.client().list_blobs(name, prefix="out/"))
    assert written == [f"out/{manifest}.json", "out/ok.flac.json"]
    # The manifest is the task's own report, not a transcript written over it.
    assert json.loads(bucket.blob(f"out/{manifest}.json").download_as_text())["task"] == 0


@pytest.mark.parametrize(
    ("relative", "refused"),
    [("a/../b.flac", True), ("../b.flac", True), ("a/..", True), ("./a.flac", True),
     ("_failures/x.json", True), ("a..b.flac", False), ("_failures.flac", False),
     ("x/_failures/y.flac", False), ("calls/2026/a.flac", False)],
)  # fmt: skip
def test_which_names_are_refused(relative: str, refused: bool) -> None:
    from whisper_service.bulk import name_refusal

    assert (name_refusal(relative) is not None) == refused
