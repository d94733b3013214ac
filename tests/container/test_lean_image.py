"""The lean image (Dockerfile.secure with ENGINES=faster-whisper): no torch, no
openai-whisper and nothing only they need, exactly the packages of
dependencies/requirements_lean.txt, and the same words and speakers as the default
image, its speaker encoder running from the ONNX graph exported at build time."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.support import AUDIO, REPO, assert_jfk, word_error_rate
from tests.support.containers import Container, docker
from tests.support.speakers import confusion_rate, three_speakers, wav_bytes

# Modules of what the lean image leaves out (openai-whisper's package is `whisper`).
ENGINE_ONLY = ("torch", "whisper", "numba", "llvmlite", "sympy", "onnx", "tiktoken")
# What the default image's openai-whisper side weighs, at the least: torch alone
# unpacks to about 750 MB. Measured: docs/deployment.md.
SAVED_AT_LEAST = 700 * 10**6
UTTERANCE_MAX_CONFUSION = 0.05  # as tests/integration/test_diarization_http.py
pytestmark = pytest.mark.timeout(1200)  # the first test waits for the images' build

INVENTORY = f"""
import importlib.metadata, importlib.util, json, pathlib
print(json.dumps({{
    "modules": [m for m in {ENGINE_ONLY!r} if importlib.util.find_spec(m)],
    "distributions": {{d.metadata["Name"].lower().replace("_", "-"): d.version
                      for d in importlib.metadata.distributions()}},
    "models": sorted(str(p.relative_to("/opt/models")) for p in
                     pathlib.Path("/opt/models").rglob("*") if p.is_file()),
}}))
"""


def lean_lock() -> dict[str, str]:
    text = (REPO / "dependencies" / "requirements_lean.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_lean_image_holds_the_lean_lock_and_no_torch(lean_image: str) -> None:
    found = docker(
        "run", "--rm", "--network=none", "--entrypoint=python", lean_image, "-c", INVENTORY
    )  # fmt: skip
    inventory = json.loads(found.stdout)
    assert inventory["modules"] == []
    installed = inventory["distributions"]
    assert installed.pop("whisper-service") == "0.1.0"
    installed.pop("pip")  # the venv's own
    assert installed == lean_lock()
    models = inventory["models"]
    assert not [m for m in models if m.endswith(".pt")], models
    assert [m for m in models if m.startswith("speaker-encoder/") and m.endswith(".onnx")]


def test_the_lean_image_is_smaller_by_the_engine_it_leaves_out(image: str, lean_image: str) -> None:
    sizes = {
        name: json.loads(docker("image", "inspect", name).stdout)[0]["Size"]
        for name in (image, lean_image)
    }
    print(f"\nimage sizes: {sizes}")
    assert sizes[lean_image] <= sizes[image] - SAVED_AT_LEAST


@pytest.fixture(scope="module")
def both(image: str, lean_image: str) -> Iterator[dict[str, Container]]:
    """A container of each image, production preset under the production limits."""
    containers = {"default": Container(image), "lean": Container(lean_image)}
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: c.run(), containers.values()))
        yield containers
    finally:
        for container in containers.values():
            container.remove()


def transcribe(container: Container, audio: bytes, **fields: str) -> dict[str, Any]:
    response = httpx.post(
        f"{container.url}/transcribe",
        files={"file": ("audio.wav", audio)},
        data=fields,
        headers=container.headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_lean_image_serves_the_api_without_openai_whisper(
    both: dict[str, Container],
) -> None:
    # A parameter whose handling once read openai-whisper's tables (language), word
    # timestamps, and the SDK's streamed transcription.
    lean = both["lean"]
    jfk = (AUDIO / "jfk.flac").read_bytes()
    body = transcribe(
        lean, jfk, language="English", response_format="verbose_json", word_timestamps="true"
    )
    assert_jfk(body["text"])
    assert body["language"] == "en"
    assert body["segments"][0]["words"]
    client = OpenAI(base_url=f"{lean.url}/v1", api_key=lean.api_key, max_retries=0)
    with (AUDIO / "jfk.flac").open("rb") as fp:
        events = list(
            client.audio.transcriptions.create(
                model="whisper-1", file=fp, language="en", stream=True
            )
        )
    assert events[-1].type == "transcript.text.done"
    assert_jfk(events[-1].text)


def test_the_lean_image_diarizes_as_the_default_does(both: dict[str, Container]) -> None:
    talk = three_speakers()
    audio = wav_bytes(talk.samples)
    answers = {
        name: transcribe(c, audio, diarize="true", response_format="verbose_json")
        for name, c in both.items()
    }
    turns = {
        name: [(u["start"], u["end"], u["speaker"]) for u in body["utterances"]]
        for name, body in answers.items()
    }
    confusion = {name: confusion_rate(talk.reference, found) for name, found in turns.items()}
    print(f"\nspeaker confusion on {talk.name}: {confusion}")
    # The same graph, weights and engine: the same speakers and words (bounded, not
    # compared as strings), and the same speaker confusion, so DER is unchanged.
    assert answers["lean"]["speakers"] == answers["default"]["speakers"] == ["A", "B", "C"]
    assert word_error_rate(answers["default"]["text"], answers["lean"]["text"]) <= 0.02
    assert abs(confusion["lean"] - confusion["default"]) <= 0.01
    assert confusion["lean"] <= UTTERANCE_MAX_CONFUSION


def test_no_faster_whisper_worker_maps_torch_in_either_image(
    both: dict[str, Container],
) -> None:
    # After the diarized request above the encoder is loaded: from its ONNX graph, in
    # both images, so no worker pays for torch (about 180 MiB).
    def mapping(container: Container, library: str) -> list[str]:
        found = container.exec("sh", "-c", f"grep -l {library} /proc/[0-9]*/maps; true")
        return found.stdout.split()

    for name, container in both.items():
        assert mapping(container, "libctranslate2"), f"{name}: the probe sees no worker"
        assert mapping(container, "libtorch") == [], f"{name}: a process maps torch"


def test_openai_whisper_on_the_lean_image_stops_at_start_with_the_reason(
    lean_image: str,
) -> None:
    container = Container(lean_image, env={"WHISPER_ENGINE": "openai-whisper"})
    try:
        with pytest.raises(RuntimeError, match="container exited before ready") as stopped:
            container.run(ready_timeout=120)
        assert "this installation has no openai-whisper: the lean image" in str(stopped.value)
    finally:
        container.remove()
