"""Hostile but well-formed input against a real server with the real model: inputs
that try to read the server's own files, recordings that change format part-way, audio
far costlier than its length, an encoded gs:// object, spoofed client addresses. None
gets a 5xx; each gets its 4xx; the valid ones are transcribed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    JFK_REFERENCE,
    REPO,
    LiveServer,
    assert_transcript,
    free_port,
    running,
)
from tests.support.media import joined_episodes, surround_flac
from tests.support.storage_emulator import Emulator
from whisper_service.audio import decode_audio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Iterator[LiveServer]:
    with running(
        tmp_path_factory.mktemp("hostile"),
        STORAGE_EMULATOR_HOST=emulator.url,
        WHISPER_GCS_ALLOWED_BUCKETS="audio-in",
    ) as started:
        yield started


def test_a_corpus_of_hostile_inputs_gets_no_5xx(server: LiveServer, audio_dir: Path) -> None:
    assert server.process is not None
    # The server's working directory is the repository: a relative name reaches its files.
    concat = b"ffconcat version 1.0\nfile scripts/testing/data/smoke.flac\n"
    playlist = b"#EXTM3U\n#EXTINF:10,\nscripts/testing/data/smoke.flac\n#EXT-X-ENDLIST\n"
    speech = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    uploads = {
        "concat.wav": (concat, 415),
        "playlist.m3u8": (playlist, 415),
        "episode.mp3": (concat, 415),  # an .ffconcat named .mp3
        "joined.mp3": (joined_episodes(speech), 200),  # 22 kHz mono, then 48 kHz stereo
        "surround.flac": (surround_flac(20.0), 200),  # 192 kHz 7.1: costly, but audio
    }
    answers = {}
    for name, (content, expected) in uploads.items():
        response = httpx.post(
            f"{server.url}/transcribe", files={"file": (name, content)}, timeout=120
        )
        answers[name] = response
        assert response.status_code == expected, (name, response.text)
        assert response.status_code < 500, name
    for name in ("concat.wav", "playlist.m3u8", "episode.mp3"):
        assert answers[name].json()["error"]["code"] == "undecodable_audio"
    assert (REPO / "scripts" / "testing" / "data" / "smoke.flac").is_file()
    # The second episode is JFK: it comes through (the tone before it may add a word).
    assert_transcript(answers["joined.mp3"].json()["text"], JFK_REFERENCE, 0.2)
    encoded = httpx.post(
        f"{server.url}/transcribe", data={"gcs_uri": "gs://audio-in/calls/jfk.flac.gz"}, timeout=60
    )
    assert encoded.status_code == 415
    assert encoded.json()["error"]["code"] == "gcs_object_encoded"
    assert server.alive()


def test_a_client_cannot_pick_its_own_address(live_server: Callable[..., LiveServer]) -> None:
    # The test client plays Cloud Run's front end (127.0.0.1, trusted): it appends the
    # real client (192.0.2.1) after whatever that client wrote in X-Forwarded-For.
    server = live_server(
        WHISPER_FORWARDED_ALLOW_IPS="127.0.0.1",
        WHISPER_RATE_LIMIT_PER_MINUTE="6",
        WHISPER_RATE_LIMIT_BURST="3",
    )
    codes = []
    for i in range(10):
        forwarded = {"X-Forwarded-For": f"10.0.0.{i}, 192.0.2.1"}
        codes.append(httpx.get(f"{server.url}/v1/models", headers=forwarded).status_code)
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429] * 7  # one client, whatever it claimed
    other = httpx.get(f"{server.url}/v1/models", headers={"X-Forwarded-For": "192.0.2.2"})
    assert other.status_code == 200


def test_metrics_on_their_own_port_merge_every_worker(
    live_server: Callable[..., LiveServer],
) -> None:
    port = free_port()
    server = live_server(
        WHISPER_WEB_WORKERS="2", WHISPER_METRICS_ACCESS="port", WHISPER_METRICS_PORT=str(port)
    )
    for _ in range(6):
        httpx.get(f"{server.url}/v1/models")
    assert httpx.get(f"{server.url}/metrics").status_code == 404
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith('whisper_http_requests_total{method="GET",route="/v1/models"')
    )
    assert total == 6
