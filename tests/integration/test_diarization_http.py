"""Speaker labels through HTTP on a live server with the real model and real voices:
/transcribe's diarize=true|channel in every format, the OpenAI SDK's diarized_json
with known speakers and streaming, and a job longer than one unit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests.support import AUDIO, LiveServer, running, word_error_rate
from tests.support.speakers import (
    Labelled,
    bush,
    confusion_rate,
    data_url,
    load,
    three_speakers,
    wav_bytes,
)
from tests.support.sse import events
from whisper_service.audio import SAMPLE_RATE

# ../shared/audio/README.md: one speaker on each channel.
LEFT = (
    "He began a confused complaint against the wizard, who had vanished behind the "
    "curtain on the left."
)
RIGHT = "The horizon seems extremely distant."
# An utterance runs from its first word to its last, over pauses the reference turns
# leave out: the transcript's speakers are scored by confusion alone.
UTTERANCE_MAX_CONFUSION = 0.05


@cache
def recording() -> Labelled:
    return three_speakers()


def post(server: LiveServer, data: dict[str, Any], body: bytes | None = None) -> httpx.Response:
    audio = body if body is not None else wav_bytes(recording().samples)
    return httpx.post(f"{server.url}/transcribe", files={"file": ("talk.wav", audio)},
                      data=data, timeout=120)  # fmt: skip


def utterance_turns(utterances: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    return [(u["start"], u["end"], u["speaker"]) for u in utterances]


def test_diarize_true_labels_every_segment(default_server: LiveServer) -> None:
    plain = post(default_server, {}).json()
    response = post(default_server, {"diarize": "true", "response_format": "verbose_json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["speakers"] == ["A", "B", "C"]
    assert all(s["speaker"] in body["speakers"] for s in body["segments"])
    assert "words" not in body["segments"][0]  # aligned for the speakers, not returned
    found = utterance_turns(body["utterances"])
    assert confusion_rate(recording().reference, found) <= UTTERANCE_MAX_CONFUSION
    # The words are the ones the plain transcription has.
    assert word_error_rate(plain["text"], body["text"]) <= 0.05
    joined = " ".join(u["text"] for u in body["utterances"])
    assert word_error_rate(body["text"], joined) <= 0.02


def test_words_carry_speakers_and_segments_split_at_changes(default_server: LiveServer) -> None:
    body = post(default_server, {"diarize": "true", "response_format": "verbose_json",
                                 "word_timestamps": "true"}).json()  # fmt: skip
    for segment in body["segments"]:
        assert {w["speaker"] for w in segment["words"]} == {segment["speaker"]}
    ids = [s["id"] for s in body["segments"]]
    assert ids == list(range(len(ids)))


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [("srt", lambda s: f"[{s}] "), ("vtt", lambda s: f"<v {s}>"), ("tsv", lambda s: f"\t{s}\n")],
)
def test_subtitles_and_tsv_name_the_speaker(
    default_server: LiveServer, fmt: str, marker: Callable[[str], str]
) -> None:
    response = post(default_server, {"diarize": "true", "response_format": fmt})
    assert response.status_code == 200, response.text
    for speaker in ("A", "B", "C"):
        assert marker(speaker) in response.text
    if fmt == "tsv":
        assert response.text.startswith("start\tend\ttext\tspeaker\n")


def test_a_stream_sends_segments_with_speakers(default_server: LiveServer) -> None:
    response = post(default_server, {"diarize": "true", "stream": "true"})
    sent = list(events(response.text.splitlines()))
    segments = [e for e in sent if e["type"] == "transcript.segment"]
    assert segments
    assert all(e["speaker"] in {"A", "B", "C"} for e in segments)
    assert sent[-1]["type"] == "transcript.done"
    assert sent[-1]["speakers"] == ["A", "B", "C"]


def test_one_speaker_per_channel(default_server: LiveServer) -> None:
    stereo = (AUDIO / "stereo_diarization.wav").read_bytes()
    body = post(default_server, {"diarize": "channel"}, stereo).json()
    said: dict[str, str] = {}
    for utterance in body["utterances"]:
        said[utterance["speaker"]] = f"{said.get(utterance['speaker'], '')} {utterance['text']}"
    assert body["speakers"] == ["left", "right"] or body["speakers"] == ["right", "left"]
    assert word_error_rate(LEFT, said["left"]) <= 0.2
    assert word_error_rate(RIGHT, said["right"]) <= 0.2


@pytest.mark.parametrize(
    ("data", "body", "says"),
    [
        ({"diarize": "channel"}, "jfk", "1 channel"),
        ({"diarize": "channel"}, "dual", "same audio"),
        ({"min_speakers": "2"}, "jfk", "needs diarize=true"),
        ({"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "jfk", "must not exceed"),
        ({"diarize": "true", "max_speakers": "20"}, "jfk", "at most 8"),
        ({"diarize": "maybe"}, "jfk", "diarize"),
    ],
)
def test_what_cannot_be_diarized_is_a_400(
    default_server: LiveServer, data: dict[str, str], body: str, says: str
) -> None:
    mono = load("diarization/sample.wav")[: 5 * SAMPLE_RATE]
    audio = wav_bytes(mono) if body == "jfk" else wav_bytes(np.stack([mono, mono]), 2)
    response = post(default_server, data, audio)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


def test_silence_is_a_transcript_without_speakers(default_server: LiveServer) -> None:
    silence = wav_bytes(np.zeros(3 * SAMPLE_RATE, dtype=np.float32))
    response = post(default_server, {"diarize": "true"}, silence)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["speakers"] == [] or len(body["speakers"]) <= 1


@pytest.fixture(scope="module")
def client(default_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{default_server.url}/v1", api_key="not-checked", max_retries=0)


def test_the_sdk_gets_diarized_json_with_known_speakers(client: OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", wav_bytes(recording().samples)),
        response_format="diarized_json",
        extra_body={
            "known_speaker_names": ["reader", "president"],
            "known_speaker_references": [
                data_url(load("en/ljspeech_LJ001-0004.wav")),
                data_url(bush(100, 8)),
            ],
        },
    )
    speakers = list(dict.fromkeys(s.speaker for s in result.segments))
    assert "reader" in speakers
    assert "president" in speakers
    assert len(speakers) == 3
    assert all(s.type == "transcript.text.segment" for s in result.segments)
    assert result.usage is not None
    assert result.usage.type == "duration"
    turns = [(s.start, s.end, s.speaker) for s in result.segments]
    reference = [(a, b, {"lj": "reader", "bush": "president"}.get(s, s))
                 for a, b, s in recording().reference]  # fmt: skip
    assert confusion_rate(reference, turns) <= UTTERANCE_MAX_CONFUSION


def test_the_sdk_streams_diarized_segments(client: OpenAI) -> None:
    stream = client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", wav_bytes(recording().samples)),
        response_format="diarized_json",
        stream=True,
    )
    sent = list(stream)
    segments = [e for e in sent if e.type == "transcript.text.segment"]
    assert {e.speaker for e in segments} == {"A", "B", "C"}  # type: ignore[union-attr]
    assert sent[-1].type == "transcript.text.done"
    joined = " ".join(e.text for e in segments)  # type: ignore[union-attr]
    assert word_error_rate(sent[-1].text, joined) <= 0.02  # type: ignore[union-attr]


def test_a_reference_clip_of_the_wrong_length_is_a_400(client: OpenAI) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="2 to 10 s"):
        client.audio.transcriptions.create(
            model="whisper-1",
            file=("talk.wav", wav_bytes(bush(0, 5))),
            response_format="diarized_json",
            extra_body={"known_speaker_names": ["a"],
                        "known_speaker_references": [data_url(bush(0, 1))]},
        )  # fmt: skip


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Jobs in a directory, units of at most 30 s: the 74 s recording makes three."""
    work = tmp_path_factory.mktemp("diarized-jobs")
    with running(work, WHISPER_JOBS_STORE=str(work / "jobs"),
                 WHISPER_JOBS_UNIT_MAX_AUDIO_SECONDS="30") as server:  # fmt: skip
        yield server


def finished_job(server: LiveServer, audio: bytes, data: dict[str, str]) -> dict[str, Any]:
    accepted = httpx.post(f"{server.url}/jobs", files={"file": ("talk.wav", audio)},
                          data=data, timeout=60)  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{server.url}/jobs/{accepted.json()['id']}",
                                        timeout=30).json()  # fmt: skip
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise AssertionError(f"job still {job['status']} after 180 s")


def test_a_job_longer_than_one_unit_keeps_its_speakers(jobs_server: LiveServer) -> None:
    job = finished_job(jobs_server, wav_bytes(recording().samples), {"diarize": "true"})
    assert job["status"] == "succeeded", json.dumps(job)
    assert job["units"]["total"] >= 2
    result = job["result"]
    assert result["speakers"] == ["A", "B", "C"]
    found = utterance_turns(result["utterances"])
    assert confusion_rate(recording().reference, found) <= UTTERANCE_MAX_CONFUSION
    srt = httpx.get(f"{jobs_server.url}/jobs/{job['id']}/result",
                    params={"response_format": "srt"}, timeout=30).text  # fmt: skip
    assert "[A] " in srt
    assert "[C] " in srt


def test_a_job_labels_a_call_by_channel(jobs_server: LiveServer) -> None:
    stereo = (AUDIO / "stereo_diarization.wav").read_bytes()
    job = finished_job(jobs_server, stereo, {"diarize": "channel"})
    assert job["status"] == "succeeded", json.dumps(job)
    assert job["units"]["total"] == 2  # one per channel
    said: dict[str, str] = {}
    for segment in job["result"]["segments"]:
        said[segment["speaker"]] = said.get(segment["speaker"], "") + segment["text"]
    assert word_error_rate(LEFT, said["left"]) <= 0.2
    assert word_error_rate(RIGHT, said["right"]) <= 0.2
    # jfk.flac's header says two channels, both the same signal: failed when planned.
    twice = finished_job(jobs_server, (AUDIO / "jfk.flac").read_bytes(), {"diarize": "channel"})
    assert twice["status"] == "failed"
    assert "same audio" in twice["error"]["message"]
    meeting_wav = wav_bytes(load("diarization/sample.wav")[: 5 * SAMPLE_RATE])
    refused = httpx.post(f"{jobs_server.url}/jobs", files={"file": ("m.wav", meeting_wav)},
                         data={"diarize": "channel"}, timeout=60)  # fmt: skip
    assert refused.status_code == 400
    assert "1 channel" in refused.json()["error"]["message"]
