"""Google's own Pub/Sub and Firestore emulators on 127.0.0.1 (part of the machine
image: `make emulators` says what is missing), for the real client libraries."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

PROJECT = "whisper-test"


class GcloudEmulator:
    """``gcloud [beta] emulators <kind> start`` in its own process group."""

    def __init__(self, kind: str, log: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        command = ["gcloud", "emulators", kind, "start", f"--host-port={self.host}"]
        if kind == "pubsub":
            command = ["gcloud", "beta", "emulators", "pubsub", "start",
                       f"--host-port={self.host}", f"--project={PROJECT}"]  # fmt: skip
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait(self, timeout: float = 90) -> GcloudEmulator:
        """Until it answers HTTP (both answer ``Ok`` on /)."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"emulator exited:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(f"http://{self.host}/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"emulator not up after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """The whole group: gcloud runs the emulator as a Java child."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


class GcpEmulators:
    """Pub/Sub and Firestore, started side by side."""

    def __init__(self, log_dir: Path) -> None:
        self.pubsub = GcloudEmulator("pubsub", log_dir / "pubsub.log")
        self.firestore = GcloudEmulator("firestore", log_dir / "firestore.log")
        try:
            self.pubsub.wait()
            self.firestore.wait()
        except BaseException:
            self.stop()  # neither may outlive a failed start
            raise

    def env(self) -> dict[str, str]:
        """What points the client libraries (ours and a server's) at the emulators."""
        return {
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }

    def create_subscriptions(
        self, name: str, push_endpoint: str, dead_letter_endpoint: str, max_attempts: int
    ) -> tuple[str, str]:
        """A topic with a push subscription (quick retries, dead-lettering) and its
        dead-letter topic with its own push subscription; the two topic paths."""
        from google.cloud import pubsub_v1
        from google.protobuf import duration_pb2
        from google.pubsub_v1.types import DeadLetterPolicy, PushConfig, RetryPolicy

        previous = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            topic = publisher.topic_path(PROJECT, name)
            dead = publisher.topic_path(PROJECT, f"{name}-dead-letter")
            for path in (topic, dead):
                publisher.create_topic(name=path)
            retry = RetryPolicy(
                minimum_backoff=duration_pb2.Duration(seconds=1),
                maximum_backoff=duration_pb2.Duration(seconds=2),
            )
            subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(PROJECT, f"{name}-push"),
                    "topic": topic,
                    "push_config": PushConfig(push_endpoint=push_endpoint),
                    "ack_deadline_seconds": 120,
                    "retry_policy": retry,
                    "dead_letter_policy": DeadLetterPolicy(
                        dead_letter_topic=dead, max_delivery_attempts=max_attempts
                    ),
                }
            )
            subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(PROJECT, f"{name}-dead-letter-push"),
                    "topic": dead,
                    "push_config": PushConfig(push_endpoint=dead_letter_endpoint),
                    "retry_policy": retry,
                }
            )
            return topic, dead
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def firestore_client(self) -> Any:
        """A Firestore client on the emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore

        os.environ["FIRESTORE_EMULATOR_HOST"] = self.firestore.host
        return firestore.Client(project=PROJECT, credentials=AnonymousCredentials())

    def stop(self) -> None:
        """Both emulators."""
        self.pubsub.stop()
        self.firestore.stop()
