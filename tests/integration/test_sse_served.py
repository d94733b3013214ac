"""stream=true end to end: the official openai SDK and raw httpx against a live server
with the real model on real speech. The transcript streams while the audio is still
being decoded, says the same as the plain answer, reports its usage and
probabilities, follows chunking_strategy, and stops when its client leaves."""

from __future__ import annotations

import math
import time
import wave
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.support import (
    AUDIO,
    JFK_MAX_WER,
    JFK_REFERENCE,
    LONG_AUDIO,
    LONG_AUDIO_MAX_WER,
    LONG_AUDIO_SILVER,
    LiveServer,
    assert_transcript,
    word_error_rate,
)
from tests.support.media import repeated_wav
from tests.support.sse import EVENT_STREAM, events, posted

RADIO = AUDIO / LONG_AUDIO  # 127 s
JFK = AUDIO / "jfk.flac"


@pytest.fixture(scope="module")
def client(default_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{default_server.url}/v1", api_key="not-checked", max_retries=0)


def running(server: LiveServer) -> int:
    """How many inferences the server is running now."""
    ready = httpx.get(f"{server.url}/health/ready", timeout=10).json()
    return int(ready["queue"]["running"])


def audio_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def test_sdk_streams_the_radio_address_as_it_is_decoded(
    client: OpenAI, default_server: LiveServer
) -> None:
    with RADIO.open("rb") as fp:
        plain = client.audio.transcriptions.create(model="whisper-1", file=fp)
    deltas: list[str] = []
    running_at_first_delta = None
    with RADIO.open("rb") as fp:
        stream = client.audio.transcriptions.create(model="whisper-1", file=fp, stream=True)
        for event in stream:
            if event.type == "transcript.text.delta":
                if not deltas:
                    running_at_first_delta = running(default_server)
                deltas.append(event.delta)
            else:
                assert event.type == "transcript.text.done"
                done = event
    # the first words came while the model was still decoding the rest
    assert running_at_first_delta == 1
    assert len(deltas) >= 10
    assert "".join(deltas) == done.text
    assert word_error_rate(plain.text, done.text) <= 0.02
    assert_transcript(done.text, LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)
    usage = done.usage.model_dump()  # type: ignore[union-attr]
    assert usage["type"] == "duration"
    assert usage["seconds"] == math.ceil(audio_seconds(RADIO))
    assert plain.usage.model_dump()["seconds"] == usage["seconds"]  # type: ignore[union-attr]


def test_sdk_logprobs_are_negative_and_finite(client: OpenAI) -> None:
    with JFK.open("rb") as fp:
        stream = client.audio.transcriptions.create(
            model="whisper-1", file=fp, stream=True, include=["logprobs"]
        )
        seen = list(stream)
    deltas, done = seen[:-1], seen[-1]
    assert done.type == "transcript.text.done"
    assert_transcript(done.text, JFK_REFERENCE, JFK_MAX_WER)
    streamed = [p.model_dump() for d in deltas for p in d.logprobs or []]
    assert [p.model_dump() for p in done.logprobs or []] == streamed
    assert len(streamed) >= 20  # one per word
    assert all(math.isfinite(p["logprob"]) and p["logprob"] <= 0 for p in streamed)
    assert any(p["logprob"] < 0 for p in streamed)
    assert all(bytes(p["bytes"]).decode() == p["token"] for p in streamed)
    assert_transcript("".join(p["token"] for p in streamed), JFK_REFERENCE, JFK_MAX_WER)


def test_chunking_strategy_changes_where_segments_fall(client: OpenAI) -> None:
    def segment_ends(**extra: object) -> tuple[list[float], str]:
        with RADIO.open("rb") as fp:
            result = client.audio.transcriptions.create(
                model="whisper-1", file=fp, response_format="verbose_json", **extra
            )
        return [round(s.end, 1) for s in result.segments or []], result.text

    plain, plain_text = segment_ends()
    chunked, chunked_text = segment_ends(
        chunking_strategy={"type": "server_vad", "silence_duration_ms": 200}
    )
    # cut at every pause of 0.2 s, the audio is decoded in other pieces
    assert chunked != plain
    assert_transcript(chunked_text, LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)
    assert_transcript(plain_text, LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)


def test_raw_wire_format_of_both_streams(default_server: LiveServer) -> None:
    for path, fields in (
        ("/v1/audio/transcriptions", {"stream": "true"}),
        ("/transcribe", {"stream": "true", "word_timestamps": "true"}),
    ):
        with posted(f"{default_server.url}{path}", JFK, **fields) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(EVENT_STREAM)
            received = list(events(response.iter_lines()))
        last = received[-1]
        assert_transcript(last["text"], JFK_REFERENCE, JFK_MAX_WER)
        assert last["usage"] == {"type": "duration", "seconds": 11}
        if path == "/transcribe":
            segments = received[:-1]
            assert {e["type"] for e in segments} == {"transcript.segment"}
            assert last["type"] == "transcript.done"
            ends = [s["end"] for s in segments]
            assert ends == sorted(ends)
            assert 0 < ends[-1] <= 11.1
            assert all(s["words"] and s["start"] <= s["words"][0]["end"] for s in segments)
        else:
            assert [e["type"] for e in received[:-1]] == ["transcript.text.delta"] * (
                len(received) - 1
            )
            assert last["type"] == "transcript.text.done"
            assert "".join(e["delta"] for e in received[:-1]) == last["text"]


def test_a_client_that_leaves_mid_stream_stops_the_inference(
    default_server: LiveServer, tmp_path: Path
) -> None:
    # 8.5 minutes: a finished inference cannot be mistaken for a stopped one
    audio = repeated_wav(RADIO, 4, tmp_path / "long.wav")
    url = f"{default_server.url}/v1/audio/transcriptions"
    with posted(url, audio, stream="true") as response:
        # Held, not dropped: a collected line iterator closes the connection, and the
        # server could see the client leave before the check below (CI saw 0 running).
        received = events(response.iter_lines())
        first = next(received)
        assert first["type"] == "transcript.text.delta"
        request_id = response.headers["x-request-id"]
        assert running(default_server) == 1

    def abandoned() -> list[dict[str, object]]:
        return [
            e
            for e in default_server.log_events()
            if e.get("message") == "stream_abandoned" and e.get("request_id") == request_id
        ]

    # the connection is closed: the worker stops at its next segment, and says why
    give_up = time.monotonic() + 120
    while not abandoned() and time.monotonic() < give_up:
        time.sleep(0.1)
    assert abandoned(), "no stream_abandoned line for the request"
    assert "client_disconnected" in str(abandoned()[0]["inference_stopped_by"])
    assert running(default_server) == 0
