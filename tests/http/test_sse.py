"""stream=true in one process: the events each route sends, in order and shape, and
what happens to errors before and after a stream starts (a stand-in engine; the real
model streaming to the openai SDK, timing and disconnects are in
tests/integration/test_sse_served.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakes import FakeEngine
from tests.support.in_process import serve
from tests.support.sse import EVENT_STREAM, parse

pytestmark = pytest.mark.anyio

LINES = ("Tom & Jerry are here", "and so is Ünal.")
JFK_SECONDS = 11.0


async def post(
    client: httpx.AsyncClient, path: str, audio_dir: Path, **fields: Any
) -> httpx.Response:
    with (audio_dir / "jfk.flac").open("rb") as fp:
        return await client.post(path, files={"file": ("jfk.flac", fp)}, data=fields)


def stream_events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(EVENT_STREAM)
    assert response.headers["cache-control"] == "no-cache"
    return parse(response.text)


async def test_openai_stream_is_deltas_then_done(audio_dir: Path) -> None:
    async with serve(FakeEngine(lines=LINES)) as service:
        response = await post(
            service.client, "/v1/audio/transcriptions", audio_dir, model="whisper-1", stream="true"
        )
    events = stream_events(response)
    assert [e["type"] for e in events] == ["transcript.text.delta"] * 2 + ["transcript.text.done"]
    deltas = [e["delta"] for e in events[:-1]]
    # the first loses Whisper's leading space, the next keeps it so words stay apart
    assert deltas == ["Tom & Jerry are here", " and so is Ünal."]
    done = events[-1]
    assert done["text"] == "".join(deltas) == "Tom & Jerry are here and so is Ünal."
    assert done["usage"] == {"type": "duration", "seconds": math.ceil(JFK_SECONDS)}
    assert all("logprobs" not in e for e in events)
    # the type leads each event on the wire, and text is not escaped to \\u sequences
    first_data = next(line for line in response.text.splitlines() if line.startswith("data:"))
    assert first_data.startswith('data: {"type": "transcript.text.delta"')
    assert "Ünal" in response.text


async def test_logprobs_come_with_each_delta_and_all_of_them_with_done(audio_dir: Path) -> None:
    async with serve(FakeEngine(lines=LINES)) as service:
        response = await post(
            service.client,
            "/v1/audio/transcriptions",
            audio_dir,
            stream="true",
            **{"include[]": "logprobs"},
        )
    events = stream_events(response)
    per_delta = [e["logprobs"] for e in events[:-1]]
    assert [[p["token"] for p in ps] for ps in per_delta] == [
        [" Tom", " &", " Jerry", " are", " here"],
        [" and", " so", " is", " Ünal."],
    ]
    for entry in per_delta[1]:
        # the stand-in gives each word probability 0.9
        assert entry["logprob"] == pytest.approx(math.log(0.9))
        assert entry["bytes"] == list(entry["token"].encode())
    assert events[-1]["logprobs"] == per_delta[0] + per_delta[1]


async def test_plain_json_has_usage_and_logprobs_when_asked(audio_dir: Path) -> None:
    async with serve(FakeEngine(lines=LINES, multilingual=True)) as service:
        plain = await post(service.client, "/v1/audio/transcriptions", audio_dir)
        with_logprobs = await post(
            service.client, "/v1/audio/transcriptions", audio_dir, **{"include[]": "logprobs"}
        )
        verbose = await post(
            service.client, "/v1/audio/translations", audio_dir, response_format="verbose_json"
        )
    usage = {"type": "duration", "seconds": 11}
    assert plain.json() == {"text": "Tom & Jerry are here and so is Ünal.", "usage": usage}
    assert len(with_logprobs.json()["logprobs"]) == 9
    assert all(p["logprob"] < 0 for p in with_logprobs.json()["logprobs"])
    assert verbose.json()["usage"] == usage


async def test_service_stream_sends_timed_segments_then_the_whole(audio_dir: Path) -> None:
    async with serve(FakeEngine(lines=LINES)) as service:
        response = await post(
            service.client,
            "/transcribe",
            audio_dir,
            stream="true",
            word_timestamps="true",
            response_format="verbose_json",
        )
        plain = await post(service.client, "/transcribe", audio_dir, stream="true")
    events = stream_events(response)
    segments, done = events[:-1], events[-1]
    assert [e["type"] for e in segments] == ["transcript.segment"] * 2
    assert [s["id"] for s in segments] == [0, 1]
    assert segments[0]["start"] == 0.0
    assert segments[0]["end"] == segments[1]["start"] < segments[1]["end"] == JFK_SECONDS
    assert [w["word"] for w in segments[1]["words"]] == [" and", " so", " is", " Ünal."]
    assert done["type"] == "transcript.done"
    assert done["text"] == "Tom & Jerry are here and so is Ünal."
    assert done["usage"] == {"type": "duration", "seconds": 11}
    assert done["model"] == "fake.en"
    assert [s["text"] for s in done["segments"]] == [s["text"] for s in segments]
    # response_format=json: the segments came as events; the last one does not repeat them
    assert "segments" not in parse(plain.text)[-1]


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/audio/transcriptions", {"response_format": "srt"}, "stream"),
        ("/v1/audio/transcriptions", {"response_format": "verbose_json"}, "stream"),
        ("/transcribe", {"response_format": "text"}, "stream"),
        # translations have no stream parameter at OpenAI: refused as unknown
        ("/v1/audio/translations", {}, "stream"),
    ],
)
async def test_a_stream_that_cannot_be_is_a_400_not_an_empty_stream(
    audio_dir: Path, path: str, fields: dict[str, str], param: str
) -> None:
    async with serve(FakeEngine()) as service:
        response = await post(service.client, path, audio_dir, stream="true", **fields)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["param"] == param


async def test_refusals_before_the_stream_starts_keep_their_status(audio_dir: Path) -> None:
    async with serve(FakeEngine()) as service:
        response = await service.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("notes.txt", b"not audio at all\n" * 100)},
            data={"stream": "true"},
        )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "undecodable_audio"


async def test_an_error_after_the_stream_started_is_an_error_event(audio_dir: Path) -> None:
    # each segment takes 1 s; the deadline passes half-way through the second
    async with serve(FakeEngine(lines=LINES, busy=1.0), request_timeout_seconds=1.5) as service:
        response = await post(service.client, "/v1/audio/transcriptions", audio_dir, stream="true")
        ready = await service.client.get("/health/ready")
    events = stream_events(response)
    assert [e["type"] for e in events] == ["transcript.text.delta", "error"]
    error = events[-1]["error"]
    assert error["code"] == "deadline_exceeded"
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    # the service is ready for the next request, its queue empty
    assert ready.status_code == 200
    assert ready.json()["queue"]["running"] == 0
