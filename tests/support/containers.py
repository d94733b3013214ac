"""Containers of the shipped image, run by the Docker engine on this machine.

Every container uses the host's network (the engine runs without a bridge) and serves
on 127.0.0.1 only; each gets its own ports and API key, and a name with one prefix so
that the suite can remove whatever it left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import yaml

from tests.support import REPO, free_port, json_lines

IMAGE = os.environ.get("WHISPER_TEST_IMAGE", "whisper-service:test")
# The lean image (ENGINES=faster-whisper): no torch, no openai-whisper.
LEAN_IMAGE = os.environ.get("WHISPER_TEST_LEAN_IMAGE", "whisper-service:test-lean")
NAME_PREFIX = "whisper-service-test-"
MANIFESTS = REPO / "deployment" / "cloud-run"


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One docker CLI call; its output as text. A failure says what docker printed."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Limits:
    """A container's resource limits as docker's flags spell them."""

    memory: str
    cpus: str

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes (docker's ``m`` is MiB)."""
        return int(self.memory.removesuffix("m")) * 2**20


def service_limits(app_env: str = "production") -> Limits:
    """The limits the Cloud Run service of ``app_env`` gives each instance, read from
    its manifest so that the tests follow a change there."""
    manifest = MANIFESTS / f"service.{app_env}.yaml"
    service = yaml.safe_load(manifest.read_text())
    containers = service["spec"]["template"]["spec"]["containers"]
    (ours,) = (c for c in containers if c["name"] == "whisper-service")  # not the sidecar
    limits = ours["resources"]["limits"]
    memory = str(limits["memory"])
    if not memory.endswith("Mi"):
        raise ValueError(f"unexpected memory limit {memory!r} in {manifest}")
    return Limits(memory=memory.removesuffix("Mi") + "m", cpus=str(limits["cpu"]))


class Container:
    """``docker run`` of the image as Cloud Run runs it: read-only root, tmpfs /tmp,
    the preset of ``app_env`` (the image's production unless told otherwise) with its
    service's limits, on the host's network."""

    def __init__(
        self,
        image: str,
        *,
        app_env: str = "production",
        api_key: str | None = None,
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.image = image
        self.name = NAME_PREFIX + secrets.token_hex(4)
        self.port = free_port()
        self.metrics_port = free_port()
        self.api_key = api_key or secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.limits = service_limits(app_env)
        self.env = {
            "APP_ENV": app_env,
            "PORT": str(self.port),
            "WHISPER_HOST": "127.0.0.1",
            "WHISPER_METRICS_PORT": str(self.metrics_port),
            "WHISPER_API_KEYS": self.api_key,
            **(env or {}),
        }
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        """The bearer key the production preset asks every caller for."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def run(self, ready_timeout: float = 120.0) -> float:
        """Start the container and wait for /health/ready; seconds from `docker run`."""
        flags = [f"--env={name}={value}" for name, value in self.env.items()]
        started = time.monotonic()
        docker(
            "run", "--detach", f"--name={self.name}", "--network=host",
            "--read-only", "--tmpfs=/tmp", "--tmpfs=/dev/shm",
            f"--memory={self.limits.memory}", f"--cpus={self.limits.cpus}",
            *flags, *self.extra, self.image,
        )  # fmt: skip
        while time.monotonic() - started < ready_timeout:
            if not self.state()["Running"]:
                raise RuntimeError(f"container exited before ready:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"container not ready after {ready_timeout} s:\n{self.logs()}")

    def inspect(self) -> dict[str, Any]:
        """``docker inspect`` of the container."""
        return dict(json.loads(docker("inspect", self.name).stdout)[0])

    def state(self) -> dict[str, Any]:
        """Its ``State``: Running, ExitCode, OOMKilled, Health."""
        return dict(self.inspect()["State"])

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A command inside the running container, as the image's user."""
        return docker("exec", self.name, *command, check=False)

    def logs(self) -> str:
        """What the container printed (stdout and stderr)."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def log_events(self) -> list[dict[str, Any]]:
        """Its JSON log lines (others skipped), also after it died."""
        return json_lines(self.logs())

    def stop(self, grace: int = 10) -> float:
        """``docker stop -t grace`` (SIGTERM, then SIGKILL); seconds until it exited."""
        started = time.monotonic()
        docker("stop", f"--time={grace}", self.name, timeout=grace + 30)
        return time.monotonic() - started

    def kill(self) -> None:
        """``docker kill``: SIGKILL to the whole container at once, a lost instance."""
        docker("kill", self.name)

    def peak_memory_bytes(self) -> int:
        """Its peak memory use as its cgroup counted it (cgroup v2, then v1)."""
        for path in (
            "/sys/fs/cgroup/memory.peak",
            "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
        ):
            read = self.exec("cat", path)
            if read.returncode == 0:
                return int(read.stdout)
        raise RuntimeError("no cgroup memory peak inside the container")

    def remove(self) -> None:
        """Remove it, running or not."""
        docker("rm", "--force", self.name, check=False)


@dataclass(frozen=True)
class Burst:
    """How a container took the hostile burst."""

    answers: list[str]  # per upload: "200", "pending" or "503 <code>"
    tree_peak_mib: int  # the process tree's peak RSS, as measure_memory.py saw it
    cgroup_peak_bytes: int  # the container's peak, as its cgroup counted it
    limit_bytes: int
    state: dict[str, Any]  # docker's State after it: Running, OOMKilled


def memory_burst(image: str, *, seconds: float, env: dict[str, str] | None = None) -> Burst:
    """A fresh container of ``image`` (production preset and limits, and ``env``) under
    eight uploads of 30 minutes of speech at once (scripts/testing/measure_memory.py,
    1.4 MB Opus each), watched for ``seconds``, then removed."""
    container = Container(image, env=env)
    try:
        container.run()
        load = subprocess.run(
            [
                sys.executable, str(REPO / "scripts" / "testing" / "measure_memory.py"),
                "burst", "--requests", "8", "--minutes", "30", "--seconds", str(seconds),
                "--url", container.url, "--pid", str(container.state()["Pid"]),
                "--api-key", container.api_key,
            ],
            capture_output=True, text=True, timeout=seconds + 240, check=False,
        )  # fmt: skip
        if load.returncode != 0:
            raise RuntimeError(f"measure_memory.py failed:\n{load.stderr}")
        report = json.loads(load.stdout)
        return Burst(
            answers=report["answers"],
            tree_peak_mib=report["peak_mib"],
            cgroup_peak_bytes=container.peak_memory_bytes(),
            limit_bytes=container.limits.memory_bytes,
            state=container.state(),
        )
    finally:
        container.remove()


def remove_test_containers() -> None:
    """Remove every container the suite started (by name prefix)."""
    if shutil.which("docker") is None:  # the engine never got installed
        return
    names = docker("ps", "--all", "--quiet", f"--filter=name={NAME_PREFIX}", check=False)
    ids = names.stdout.split()
    if ids:
        docker("rm", "--force", *ids, check=False)
