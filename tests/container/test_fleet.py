"""A local Cloud Run fleet: two containers of the image behind a least-busy front (the
platform's load balancer), jobs on Google's Pub/Sub and Firestore emulators with their
files in gcp-storage-emulator, and a real Prometheus scraping both containers' metrics
ports with the scrape config and the alert rules that deployment/monitoring ships.

The containers run the staging preset under the staging service's limits: production
refuses the emulator's push token (its pushes carry OIDC tokens, which no emulator
signs), and staging is where a release meets the platform's engines first. Two
settings differ, both for the test's sake: units of at most 30 s (so a 2-minute
recording is five units to share), and no per-client rate limit (every call comes from
this one test client)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import (
    LONG_AUDIO,
    LONG_AUDIO_MAX_WER,
    LONG_AUDIO_SILVER,
    REPO,
    assert_transcript,
    pooled_wer,
)
from tests.support.balancer import Balancer
from tests.support.containers import Container
from tests.support.google_emulators import GcpEmulators
from tests.support.job_fleet import (
    MAX_ATTEMPTS,
    PUSH_TOKEN,
    assert_timeline,
    fleet_env,
    submit,
    wait_for,
)
from tests.support.prometheus import Prometheus
from tests.support.storage_emulator import Emulator

MONITORING = REPO / "deployment" / "monitoring"
# A burst of concurrent /transcribe calls: more than two staging containers hold
# (each: a batch of 4 running, 3 waiting), so some get 429 queue_full.
OVERLOAD_REQUESTS = 24
pytestmark = pytest.mark.timeout(1200)  # the first test waits for the image's build


@dataclass
class Fleet:
    """The containers, the front that spreads requests and pushes over them, and the
    Prometheus that scrapes them."""

    containers: list[Container]
    front: Balancer
    prometheus: Prometheus
    headers: dict[str, str]

    def job_events(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """The log events about ``job_id``, per container (also a dead one's)."""
        return {
            c.name: [e for e in c.log_events() if e.get("job_id") == job_id]
            for c in self.containers
        }

    def events(self, message: str, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """``message`` log events about ``job_id``, per container."""
        return {
            name: [e for e in found if e.get("message") == message]
            for name, found in self.job_events(job_id).items()
        }


def scrape_config(metrics_ports: list[int]) -> dict[str, Any]:
    """deployment/monitoring/prometheus.yml with this fleet's targets, scraping and
    evaluating every second instead of every 15 s."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    (targets,) = job["static_configs"]
    targets["targets"] = [f"127.0.0.1:{port}" for port in metrics_ports]
    return config


def alert_rules() -> dict[str, Any]:
    """deployment/monitoring/alerts.yml, each alert firing as soon as its expression
    holds: its ``for`` (minutes in production) would outlast the test. The expressions
    are the shipped ones."""
    rules: dict[str, Any] = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    return {"alerts.yml": rules}


@pytest.fixture(scope="module")
def fleet(
    image: str, gcp: GcpEmulators, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    emulator.client().create_bucket(name)
    key = secrets.token_hex(24)
    env = {**fleet_env(gcp, emulator.url, name), "WHISPER_RATE_LIMIT_PER_MINUTE": "0"}
    containers = [Container(image, app_env="staging", api_key=key, env=env) for _ in range(2)]
    front = Balancer([c.port for c in containers])
    gcp.create_subscriptions(
        name,
        f"{front.url}/internal/jobs/units?token={PUSH_TOKEN}",
        f"{front.url}/internal/jobs/dead-letters?token={PUSH_TOKEN}",
        MAX_ATTEMPTS,
    )
    prometheus = Prometheus(
        tmp_path_factory.mktemp("fleet-prometheus"),
        scrape_config([c.metrics_port for c in containers]),
        alert_rules(),
    )
    try:
        with ThreadPoolExecutor(len(containers)) as pool:
            list(pool.map(lambda c: c.run(), containers))
        yield Fleet(containers, front, prometheus, containers[0].headers)
    finally:
        for container in containers:
            container.remove()
        front.stop()
        prometheus.stop()


@pytest.fixture(scope="module")
def fleet_job(fleet: Fleet, audio_dir: Path) -> dict[str, Any]:
    """The radio address (127 s) as a job submitted through the front."""
    accepted = submit(fleet.front.url, audio_dir / LONG_AUDIO, fleet.headers, language="en")
    job: dict[str, Any] = wait_for(
        fleet.front.url, accepted["id"], ("succeeded", "failed"), 300, fleet.headers
    )
    assert job["status"] == "succeeded", job["error"]
    return job


def test_a_jobs_units_run_on_both_containers_and_match_one_transcribe(
    fleet: Fleet, fleet_job: dict[str, Any], audio_dir: Path
) -> None:
    job_id = fleet_job["id"]
    assert fleet_job["units"]["done"] == fleet_job["units"]["total"] >= 4
    done = fleet.events("job_unit_done", job_id)
    units = {name: sorted(e["unit"] for e in found) for name, found in done.items()}
    print(f"\nunits per container: {units}")
    assert all(units.values()), f"a container ran no unit: {units}"
    assert sorted(u for found in units.values() for u in found) == list(
        range(fleet_job["units"]["total"])
    )
    time.sleep(1)  # the merging container logs just after the transition it made
    assert sum(len(found) for found in fleet.events("job_merged", job_id).values()) == 1

    with (audio_dir / LONG_AUDIO).open("rb") as audio:
        one = httpx.post(
            f"{fleet.containers[0].url}/transcribe",
            files={"file": (LONG_AUDIO, audio)},
            data={"language": "en"},
            headers=fleet.headers,
            timeout=300,
        )
    assert one.status_code == 200, one.text
    result = fleet_job["result"]
    difference = pooled_wer([one.json()["text"]], [result["text"]])
    print(f"job across the fleet vs one /transcribe: {difference:.3f} of words differ")
    assert difference < 0.1  # windows cut at pauses vs 30 s steps (tests/integration/test_jobs)
    assert_transcript(result["text"], LONG_AUDIO_SILVER, LONG_AUDIO_MAX_WER)
    assert_timeline(result["segments"], fleet_job["progress"]["audio_seconds_total"])


def transcribe_jfk(fleet: Fleet, audio: bytes) -> httpx.Response:
    with httpx.Client(timeout=120) as client:
        return client.post(
            f"{fleet.front.url}/transcribe",
            files={"file": ("jfk.flac", audio)},
            headers=fleet.headers,
        )


def test_both_containers_are_scraped_and_overload_fires_an_alert(
    fleet: Fleet, audio_dir: Path
) -> None:
    up = fleet.prometheus.wait(
        lambda: (lambda up: up if len(up) == 2 and all(up.values()) else None)(
            fleet.prometheus.targets_up()
        ),
        "both metrics ports up",
    )
    assert set(up) == {f"127.0.0.1:{c.metrics_port}" for c in fleet.containers}
    assert fleet.prometheus.alerts().get("WhisperRejectionRateHigh") != "firing"

    audio = (audio_dir / "jfk.flac").read_bytes()
    with ThreadPoolExecutor(OVERLOAD_REQUESTS) as pool:
        answers = list(pool.map(lambda _: transcribe_jfk(fleet, audio), range(OVERLOAD_REQUESTS)))
    codes = [a.json()["error"]["code"] for a in answers if a.status_code == 429]
    print(f"\n{OVERLOAD_REQUESTS} at once: {len(codes)} refused ({set(codes)})")
    assert {a.status_code for a in answers} <= {200, 429}
    assert set(codes) == {"queue_full"}, "nothing was refused"

    fleet.prometheus.wait(
        lambda: fleet.prometheus.alerts().get("WhisperRejectionRateHigh") == "firing",
        "WhisperRejectionRateHigh firing",
    )


def test_every_dashboard_query_returns_data(fleet: Fleet) -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    empty = []
    for query in queries:
        try:
            fleet.prometheus.wait(lambda q=query: fleet.prometheus.query(q), query, timeout=20)
        except AssertionError:
            empty.append(query)
    assert not empty, f"{len(empty)} of {len(queries)} dashboard queries returned nothing"


def test_docker_kill_mid_unit_loses_nothing_and_doubles_nothing(
    fleet: Fleet, fleet_job: dict[str, Any], audio_dir: Path
) -> None:
    # Last in this module: the container killed here stays dead.
    accepted = submit(fleet.front.url, audio_dir / LONG_AUDIO, fleet.headers, language="en")
    job_id = accepted["id"]
    victim = None
    give_up = time.monotonic() + 120
    while victim is None and time.monotonic() < give_up:
        for container, found in zip(
            fleet.containers, fleet.job_events(job_id).values(), strict=True
        ):
            started = [e for e in found if e.get("message") == "job_delivery_started"]
            units = [e for e in started if e["piece"] != "plan"]
            if units and not any(e.get("message") == "job_unit_done" for e in found):
                victim = container  # in the middle of its first unit
                break
        time.sleep(0.1)
    assert victim is not None, "no container was seen in the middle of a unit"
    victim.kill()
    survivor = next(c for c in fleet.containers if c is not victim)

    job = wait_for(survivor.url, job_id, ("succeeded", "failed"), 300, fleet.headers)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] >= 2, "the killed unit was not delivered again"
    assert job["units"]["done"] == job["units"]["total"] == fleet_job["units"]["total"]
    result = job["result"]
    difference = pooled_wer([fleet_job["result"]["text"]], [result["text"]])
    print(f"\nafter docker kill mid-unit: attempts {job['attempts']}, word difference "
          f"{difference:.4f} from the undisturbed job")  # fmt: skip
    assert difference < 0.01
    assert len(result["segments"]) == len(fleet_job["result"]["segments"])
    assert_timeline(result["segments"], job["progress"]["audio_seconds_total"])
    time.sleep(1)
    assert sum(len(found) for found in fleet.events("job_merged", job_id).values()) == 1
