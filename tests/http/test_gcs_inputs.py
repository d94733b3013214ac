"""gs:// inputs refused before a byte of audio moves (in-process, a stand-in engine, the
real google-cloud-storage client against gcp-storage-emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from tests.support.storage_emulator import Emulator

pytestmark = pytest.mark.anyio

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture
async def client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    async with serve(
        FakeEngine(),
        gcs_allowed_buckets="audio-in,transcripts",
        gcs_output_uri="gs://transcripts/out",
        max_upload_bytes=MAX_UPLOAD,
    ) as service:
        yield service.client


async def test_an_allowed_object_is_fetched_and_decoded(client: httpx.AsyncClient) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac"})
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(11.0, abs=0.05)


async def test_disallowed_bucket_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": "gs://private/jfk.flac"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "gcs_bucket_not_allowed"
    assert response.json()["error"]["param"] == "gcs_uri"


async def test_missing_object_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/transcribe", data={"gcs_uri": "gs://audio-in/calls/nothing-here.wav"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "gcs_object_not_found"


async def test_oversized_object_is_413_without_downloading(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": "gs://audio-in/calls/big.wav"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    # The emulator logs every request: metadata was read, the media never.
    lines = emulator.requests_log().splitlines()
    assert [line for line in lines if "big.wav" in line and "alt=media" in line] == []
    assert any("big.wav" in line for line in lines)


@pytest.mark.parametrize("uri", ["s3://audio-in/x.wav", "gs://", "gs://audio-in"])
async def test_malformed_uri_is_400(client: httpx.AsyncClient, uri: str) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": uri})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_gcs_uri"


async def test_exactly_one_source(client: httpx.AsyncClient, audio_dir: Path) -> None:
    both = await client.post(
        "/transcribe",
        files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())},
        data={"gcs_uri": "gs://audio-in/calls/jfk.flac"},
    )
    assert both.status_code == 400
    assert "exactly one" in both.json()["error"]["message"]


async def test_gcs_unreachable_is_502_within_the_gcs_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens there: every attempt fails to connect and is retried with backoff
    # until WHISPER_GCS_TIMEOUT_SECONDS, not the client library's own 120 s.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    async with serve(gcs_allowed_buckets="audio-in", gcs_timeout_seconds=3) as service:
        response = await service.client.post(
            "/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac"}
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "gcs_unavailable"


async def test_an_object_stored_gzip_encoded_is_refused_before_download(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac.gz"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "gcs_object_encoded"
    lines = emulator.requests_log().splitlines()
    assert [line for line in lines if "jfk.flac.gz" in line and "alt=media" in line] == []


async def test_outputs_are_named_by_the_server_not_the_caller(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    headers = {"X-Request-ID": "another-tenants-transcript"}
    response = await client.post(
        "/transcribe",
        data={"gcs_uri": "gs://audio-in/calls/jfk.flac", "save_to_gcs": "true"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "another-tenants-transcript"
    output = response.json()["output_uri"]
    assert "another-tenants-transcript" not in output
    name = output.removeprefix("gs://transcripts/")
    assert emulator.client().bucket("transcripts").blob(name).exists()


async def test_refusals_do_not_reveal_the_allow_list(client: httpx.AsyncClient) -> None:
    response = await client.post("/transcribe", data={"gcs_uri": "gs://private/jfk.flac"})
    message = response.json()["error"]["message"]
    assert "audio-in" not in message
    assert "transcripts" not in message


async def test_no_credentials_is_a_503_with_the_reason_in_the_log(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No emulator, no key file, no gcloud login, no metadata server.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    async with serve(gcs_allowed_buckets="audio-in", log_format="json") as service:
        for _ in range(100):  # the startup check runs in the background
            if "gcs_credentials_missing" in capsys.readouterr().out:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no startup warning about missing credentials")
        response = await service.client.post(
            "/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac"}
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "DefaultCredentialsError" not in response.text
