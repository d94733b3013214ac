"""The rendered jobs.<env>.sh: valid bash, and its Pub/Sub commands run for real by
gcloud against Google's emulator, which then holds exactly the subscriptions the
settings describe."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.google_emulators import PROJECT, GcpEmulators
from whisper_service.config import AppEnv, preset_settings
from whisper_service.jobs.push_auth import route_audience

MANIFESTS = Path(__file__).resolve().parents[2] / "deployment" / "cloud-run"


def commands(script: str) -> list[str]:
    """The script's commands, continuation lines joined."""
    return [c.strip() for c in script.replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.parametrize("env", list(AppEnv))
def test_the_script_is_valid_bash(env: AppEnv) -> None:
    script = MANIFESTS / f"jobs.{env.value}.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_pubsub_commands_create_what_the_settings_say(gcp: GcpEmulators) -> None:
    settings = preset_settings("staging")
    script = (MANIFESTS / "jobs.staging.sh").read_text()
    gcloud_env = {
        **os.environ,
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{gcp.pubsub.host}/",
        "CLOUDSDK_AUTH_ACCESS_TOKEN": "emulator",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "SERVICE_URL": "https://whisper-service-staging.example.run.app",
    }
    creating = [
        c for c in commands(script) if re.match(r"gcloud pubsub (topics|subscriptions) create", c)
    ]
    assert len(creating) == 4
    for command in creating:
        subprocess.run(["bash", "-c", command], env=gcloud_env, check=True, capture_output=True)

    def describe(name: str) -> dict[str, object]:
        out = subprocess.run(
            ["gcloud", "pubsub", "subscriptions", "describe", name, "--format=json"],
            env=gcloud_env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        found: dict[str, object] = json.loads(out)
        return found

    units = describe("whisper-jobs-staging-push")
    assert units["ackDeadlineSeconds"] == 600
    assert units["deadLetterPolicy"] == {
        "deadLetterTopic": f"projects/{PROJECT}/topics/whisper-jobs-staging-dead-letter",
        "maxDeliveryAttempts": settings.jobs_max_attempts,
    }
    assert units["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    push = units["pushConfig"]
    assert isinstance(push, dict)
    assert push["pushEndpoint"] == (
        "https://whisper-service-staging.example.run.app/internal/jobs/units"
    )
    env = (MANIFESTS / "env.staging.yaml").read_text()
    audience = re.search(r"^WHISPER_PUBSUB_PUSH_AUDIENCE: (\S+)$", env, re.M)
    assert audience is not None
    # The service checks exactly what each subscription signs with: its route's own.
    assert push["oidcToken"]["audience"] == route_audience(audience[1], "/internal/jobs/units")
    account = push["oidcToken"]["serviceAccountEmail"]
    assert f"WHISPER_PUBSUB_PUSH_SERVICE_ACCOUNT: {account}" in env
    dead = describe("whisper-jobs-staging-dead-letter-push")
    assert dead["pushConfig"]["pushEndpoint"].endswith("/internal/jobs/dead-letters")
    assert dead["pushConfig"]["oidcToken"]["audience"] == route_audience(
        audience[1], "/internal/jobs/dead-letters"
    )
    # A unit at its target time takes at most a quarter of the ack deadline.
    assert settings.jobs_unit_seconds * 4 <= int(str(units["ackDeadlineSeconds"]))
