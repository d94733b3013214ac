"""Every line a live server writes during a request is Cloud Logging JSON carrying the
request's trace; secrets never appear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, running

KEY = "s3cret-key-that-must-not-leak"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running(
        tmp_path_factory.mktemp("logged-server"),
        WHISPER_API_KEYS=KEY,
        WHISPER_GCP_PROJECT="my-project",
        WHISPER_LOG_LEVEL="DEBUG",
    ) as server:
        yield server


def test_request_lines_are_json_with_trace_and_no_secrets(
    logged_server: LiveServer, audio_dir: Path
) -> None:
    before = len(logged_server.logs().splitlines())
    with (audio_dir / "jfk.flac").open("rb") as fp:
        response = httpx.post(
            f"{logged_server.url}/transcribe?token=abc&lang=en",
            files={"file": ("jfk.flac", fp)},
            headers={
                "Authorization": f"Bearer {KEY}",
                "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
                "User-Agent": "log-test/1.0",
            },
            timeout=60,
        )
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    httpx.get(f"{logged_server.url}/health/live")  # a probe in between
    lines = logged_server.logs().splitlines()[before:]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is JSON
    for record in records:
        assert record["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert isinstance(record["message"], str)
        assert "time" in record
    mine = [r for r in records if r.get("request_id") == request_id]
    assert {r["message"] for r in mine} >= {"transcribed", "request"}
    for record in mine:
        assert record["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
        assert len(record["logging.googleapis.com/spanId"]) == 16
        assert record["logging.googleapis.com/trace_sampled"] is True
    access = next(r for r in mine if r["message"] == "request")
    http = access["httpRequest"]
    assert http["requestMethod"] == "POST"
    assert http["requestUrl"] == "/transcribe?token=REDACTED&lang=en"
    assert http["status"] == 200
    assert http["latency"].endswith("s")
    assert float(http["latency"][:-1]) > 0
    assert http["userAgent"] == "log-test/1.0"
    assert http["remoteIp"] == "127.0.0.1"
    assert int(http["responseSize"]) == len(response.content)
    transcribed = next(r for r in mine if r["message"] == "transcribed")
    assert "text" not in transcribed  # transcripts are off by default
    whole = logged_server.logs()
    assert KEY not in whole
    assert "Bearer" not in whole
    assert "country" not in whole  # no transcript content


def test_gunicorn_and_startup_lines_are_json_too(logged_server: LiveServer) -> None:
    for line in logged_server.logs().splitlines():
        record = json.loads(line)
        assert "severity" in record, line
        assert "message" in record, line
