"""Jobs across instances on the platform's engines: the settings that make a recording
several units, the environment that points instances at the emulators, and the
client's side (submit, wait, check the merged timeline). Shared by the suite's
process fleet (tests/integration/test_distributed_jobs.py) and its container fleet
(tests/container/test_fleet.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.google_emulators import PROJECT, GcpEmulators

PUSH_TOKEN = "push-token-for-the-emulator-0123456789"  # noqa: S105 - the emulator's stand-in
MAX_ATTEMPTS = 5
# Units of at most 30 s of audio, one window per batch, one inference thread per
# instance: the 127 s recording becomes five units for the instances to share.
UNIT_SETTINGS = {
    "WHISPER_JOBS_UNIT_MAX_AUDIO_SECONDS": "30",
    "WHISPER_JOBS_BATCH_SIZE": "1",
    "WHISPER_CPU_THREADS": "1",
    "WHISPER_INFERENCE_WORKERS": "1",
    "WHISPER_JOBS_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
}


def fleet_env(gcp: GcpEmulators, storage_url: str, name: str) -> dict[str, str]:
    """An instance's environment for jobs on Pub/Sub, Firestore and Cloud Storage (the
    emulators), with records in collection ``name`` and files in bucket ``name``."""
    topic = f"projects/{PROJECT}/topics/{name}"
    return {
        **gcp.env(),
        "STORAGE_EMULATOR_HOST": storage_url,
        "WHISPER_JOBS_STORE": "firestore",
        "WHISPER_FIRESTORE_COLLECTION": name,
        "WHISPER_JOBS_FILES": f"gs://{name}/jobs",
        "WHISPER_JOBS_QUEUE": "pubsub",
        "WHISPER_PUBSUB_TOPIC": topic,
        "WHISPER_PUBSUB_DEAD_LETTER_TOPIC": f"{topic}-dead-letter",
        "WHISPER_PUBSUB_PUSH_TOKEN": PUSH_TOKEN,
        **UNIT_SETTINGS,
    }


def submit(
    url: str, path: Path, headers: dict[str, str] | None = None, **fields: str
) -> dict[str, Any]:
    """POST /jobs with the file; the 202's body."""
    with path.open("rb") as audio:
        response = httpx.post(
            f"{url}/jobs",
            files={"file": (path.name, audio)},
            data=fields,
            headers=headers,
            timeout=60,
        )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    url: str,
    job_id: str,
    statuses: tuple[str, ...],
    timeout: float = 180,
    headers: dict[str, str] | None = None,
) -> Any:
    """The job once its status is one of ``statuses``."""
    give_up = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < give_up:
        try:
            job = httpx.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10).json()
        except httpx.TransportError:  # the instance asked was just killed: ask another
            time.sleep(0.2)
            continue
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never got to {statuses}: {job}")


def assert_timeline(segments: list[dict[str, Any]], duration: float) -> None:
    """Every segment once, in order: none lost at a unit's edge, none doubled."""
    assert [s["id"] for s in segments] == list(range(len(segments)))
    for before, after in itertools.pairwise(segments):
        assert before["start"] <= after["start"], (before, after)
        assert before["end"] <= after["start"] + 0.5, ("overlap", before, after)
    assert segments[-1]["end"] > duration - 10
