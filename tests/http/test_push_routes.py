"""Pub/Sub's push routes in one process: mounted only with the Pub/Sub queue, each
push authenticated before its body is read and its body bounded, failed credentials
limited, the token kept out of spans, dead letters acted on once. The service
publishes to Google's Pub/Sub emulator (real client library); the test pulls what it
published and pushes it as a push subscription would (issue 23)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.fakes import FakeEngine, loader
from tests.support.google_emulators import PROJECT, GcpEmulators
from tests.support.in_process import InProcess, quiet_settings, serve
from whisper_service.app import create_app
from whisper_service.jobs.records import Job, JobOptions, JobSource, JobStatus, new_job_id
from whisper_service.observability import metrics

pytestmark = pytest.mark.anyio

TOKEN = "push-token-for-the-emulator-0123456789"  # noqa: S105 - the emulator's stand-in
UNITS, DEAD_LETTERS = "/internal/jobs/units", "/internal/jobs/dead-letters"


class Topic:
    """A topic on the emulator and a pull subscription standing in for the push one."""

    def __init__(self, gcp: GcpEmulators) -> None:
        from google.cloud import pubsub_v1

        name = f"push-{uuid.uuid4().hex[:8]}"
        self.publisher, self.subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        self.path = self.publisher.topic_path(PROJECT, name)
        self.dead = self.publisher.topic_path(PROJECT, f"{name}-dead-letter")
        for path in (self.path, self.dead):
            self.publisher.create_topic(name=path)
        self.subscription = self.subscriber.subscription_path(PROJECT, name)
        self.subscriber.create_subscription(name=self.subscription, topic=self.path)

    async def push_all(self, client: httpx.AsyncClient) -> int:
        """Pull what the service published and push it to the units route, acking what
        was answered 204; how many were pushed."""
        response = await asyncio.to_thread(
            self.subscriber.pull,
            request={"subscription": self.subscription, "max_messages": 10},
            timeout=5,
        )
        for received in response.received_messages:
            message = received.message
            body = envelope(
                message.data, dict(message.attributes), message.message_id, self.subscription
            )
            answer = await client.post(f"{UNITS}?token={TOKEN}", json=body)
            if answer.status_code == 204:
                await asyncio.to_thread(
                    self.subscriber.acknowledge,
                    request={"subscription": self.subscription, "ack_ids": [received.ack_id]},
                )
        return len(response.received_messages)


def envelope(
    data: bytes,
    attributes: dict[str, str] | None = None,
    message_id: str = "1",
    subscription: str = "projects/p/subscriptions/s",
) -> dict[str, Any]:
    """A push request's body around ``data``, as Pub/Sub sends it."""
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes or {},
               "messageId": message_id}  # fmt: skip
    return {"message": message, "subscription": subscription}


def delivery(job_id: str, unit: int | None = None) -> bytes:
    return json.dumps({"job_id": job_id, "unit": unit}).encode()


@pytest.fixture
def topic(gcp: GcpEmulators, monkeypatch: pytest.MonkeyPatch) -> Topic:
    for name, value in gcp.env().items():
        monkeypatch.setenv(name, value)
    return Topic(gcp)


def pubsub_settings(topic: Topic, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "jobs_store": str(tmp_path / "store"),
        "jobs_queue": "pubsub",
        "pubsub_topic": topic.path,
        "pubsub_dead_letter_topic": topic.dead,
        "pubsub_push_token": TOKEN,
        **extra,
    }


@pytest.fixture
async def pushed_to(topic: Topic, tmp_path: Path) -> AsyncIterator[InProcess]:
    async with serve(**pubsub_settings(topic, tmp_path)) as service:
        yield service


async def job_status(service: InProcess, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = (await service.client.get(f"/jobs/{job_id}")).json()
    return job


async def test_a_job_runs_on_what_its_subscription_pushes(
    pushed_to: InProcess, topic: Topic, audio_dir: Path
) -> None:
    client = pushed_to.client
    accepted = await client.post(
        "/jobs", files={"file": ("jfk.flac", (audio_dir / "jfk.flac").read_bytes())}
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    for _ in range(20):  # the plan, then its units, as the subscription would push them
        await topic.push_all(client)
        if (await job_status(pushed_to, job_id))["status"] == "succeeded":
            break
    done = await job_status(pushed_to, job_id)
    assert done["status"] == "succeeded", done
    body = envelope(delivery(job_id, 0))
    for credentials, status in (({"headers": {"X-API-Key": TOKEN}}, 401),
                                ({"params": {"token": TOKEN[:-1]}}, 403)):  # fmt: skip
        forged = await client.post(UNITS, json=body, **credentials)  # type: ignore[arg-type]
        assert forged.status_code == status
        assert forged.json()["error"]["code"] == "push_unauthorized"
        assert forged.headers["connection"] == "close"
    after = await job_status(pushed_to, job_id)
    assert (after["status"], after["attempts"]) == ("succeeded", done["attempts"])
    # The subscription's own: a redelivered unit of a finished job is acked, no work.
    assert (await client.post(f"{UNITS}?token={TOKEN}", json=body)).status_code == 204
    garbage = await client.post(f"{UNITS}?token={TOKEN}", json=envelope(b"not json"))
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "invalid_delivery"
    spec = (await client.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p.startswith("/internal")]


class Recorder:
    """A raw ASGI exchange: what the app sent, and how much of the body it read."""

    def __init__(self, body: bytes, chunk: int = 16 * 1024) -> None:
        self.chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            await asyncio.sleep(3600)  # the client stopped sending, as a slow one does
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))

    def header(self, name: bytes) -> bytes | None:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return next((v for k, v in start["headers"] if k == name), None)


def raw_scope(query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": UNITS, "raw_path": UNITS.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"testserver"), *headers],
        "client": ("203.0.113.9", 40000), "server": ("testserver", 80),
    }  # fmt: skip


async def test_credentials_are_checked_before_the_body_is_read(pushed_to: InProcess) -> None:
    # Nested empty lists: 100 KiB of them would take megabytes as Python objects.
    body = b"[" * 50_000 + b"]" * 50_000
    declared = [(b"content-type", b"application/json"), (b"content-length", b"104857600")]
    for query in (b"", b"token=guess"):
        exchange = Recorder(body)
        async with asyncio.timeout(10):
            await pushed_to.app(raw_scope(query, declared), exchange.receive, exchange.send)
        assert exchange.status in (401, 403)
        assert exchange.read == 0  # refused from the headers alone
        assert exchange.header(b"connection") == b"close"
    # The subscription's own credentials, and a body no push of this service needs.
    exchange = Recorder(body)
    token = f"token={TOKEN}".encode()
    async with asyncio.timeout(10):
        await pushed_to.app(raw_scope(token, declared), exchange.receive, exchange.send)
    assert (exchange.status, exchange.read) == (413, 0)
    exchange = Recorder(body)  # no Content-Length: stopped as it passes the bound
    chunked = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    async with asyncio.timeout(10):
        await pushed_to.app(raw_scope(token, chunked), exchange.receive, exchange.send)
    assert exchange.status == 413
    assert exchange.read <= 64 * 1024 + 16 * 1024


async def test_failed_push_credentials_are_limited_per_address(
    topic: Topic, tmp_path: Path
) -> None:
    async with serve(**pubsub_settings(topic, tmp_path, auth_failures_per_minute=3)) as service:
        body = envelope(delivery(new_job_id()))
        for _ in range(3):
            assert (await service.client.post(f"{UNITS}?token=guess", json=body)).status_code == 403
        held_off = await service.client.post(f"{UNITS}?token={TOKEN}", json=body)
        assert held_off.status_code == 429
        assert int(held_off.headers["retry-after"]) >= 1


async def test_the_push_routes_exist_only_with_the_pubsub_queue(tmp_path: Path) -> None:
    body = envelope(delivery(new_job_id()))
    async with serve(jobs_store=str(tmp_path / "store")) as local:
        assert (await local.client.post(UNITS, json=body)).status_code == 404
        assert (await local.client.post(DEAD_LETTERS, json=body)).status_code == 404
    key = "alice-" + "a" * 32
    async with serve(jobs_store=str(tmp_path / "store"), api_keys=key) as keyed:
        # Not a door without a key either: the path is an API path like any other.
        assert (await keyed.client.post(UNITS, json=body)).status_code == 401


async def test_the_push_token_never_reaches_a_span(topic: Topic, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = quiet_settings(**pubsub_settings(topic, tmp_path))
    app = create_app(settings, engine_loader=loader(FakeEngine()), tracer_provider=provider)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for token in (TOKEN, "guess-" + TOKEN):
                body = envelope(delivery(new_job_id()))
                await client.post(f"{UNITS}?token={token}&other=kept", json=body)
    server = [s for s in exporter.get_finished_spans() if s.name.startswith("POST")]
    assert len(server) == 2
    shown = repr([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    assert TOKEN not in shown
    assert "token=REDACTED&other=kept" in shown


def running_job(**fields: Any) -> Job:
    return Job(id=new_job_id(), source=JobSource(kind="gcs", uri="gs://b/x.wav"),
               options=JobOptions(), status=JobStatus.RUNNING, **fields)  # fmt: skip


async def test_a_dead_letter_fails_its_job_once(pushed_to: InProcess) -> None:
    jobs = pushed_to.runtime.jobs
    assert jobs is not None
    job, stale = running_job(), running_job(units_total=2, units_done=[0])
    for record in (job, stale):
        await asyncio.to_thread(jobs.store.create, record)
    count = {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    url = f"{DEAD_LETTERS}?token={TOKEN}"

    def dead_lettered() -> float:
        return metrics.JOBS_DEAD_LETTERED._value.get()  # type: ignore[attr-defined,no-any-return]

    before = dead_lettered()
    not_dead = await pushed_to.client.post(url, json=envelope(delivery(job.id, 1)))
    assert not_dead.status_code == 400  # Pub/Sub marks every message it dead-letters
    assert (await job_status(pushed_to, job.id))["status"] == "running"
    first = envelope(delivery(job.id, 1), count, message_id="m-1")
    assert (await pushed_to.client.post(url, json=first)).status_code == 204
    failed = await job_status(pushed_to, job.id)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "job_delivery_failed")
    assert dead_lettered() == before + 1
    # Delivered again (at least once), or replayed: acked, nothing more.
    assert (await pushed_to.client.post(url, json=first)).status_code == 204
    # The same message id over another job's body is the same message: ignored.
    replayed = envelope(delivery(stale.id, 1), count, message_id="m-1")
    assert (await pushed_to.client.post(url, json=replayed)).status_code == 204
    assert (await job_status(pushed_to, stale.id))["status"] == "running"
    # A unit whose result is stored does not fail its job, whatever the message says.
    done_unit = envelope(delivery(stale.id, 0), count, message_id="m-2")
    assert (await pushed_to.client.post(url, json=done_unit)).status_code == 204
    assert (await job_status(pushed_to, stale.id))["status"] == "running"
    assert dead_lettered() == before + 1
