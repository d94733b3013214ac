"""A real Prometheus server (Debian's prometheus package) on 127.0.0.1, with the
queries and alert states that tests read back over its HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import free_port


class Prometheus:
    """``prometheus`` with ``config`` (a prometheus.yml as a mapping, written with the
    rule files beside it), its data and log in ``directory``."""

    def __init__(
        self, directory: Path, config: dict[str, Any], rules: dict[str, Any] | None = None
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: `make test` installs Debian's package")
        directory.mkdir(parents=True, exist_ok=True)
        for name, groups in (rules or {}).items():
            (directory / name).write_text(yaml.safe_dump(groups, sort_keys=False))
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or []) for ``expression``; [] while the server starts."""
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        except httpx.TransportError:
            return []
        body = answer.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expression!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> dict[str, str]:
        """Each active alert's name and state (``pending`` or ``firing``)."""
        try:
            answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=10)
        except httpx.TransportError:
            return {}
        states: dict[str, str] = {}
        for alert in answer.json()["data"]["alerts"]:
            name = alert["labels"]["alertname"]
            if states.get(name) != "firing":
                states[name] = alert["state"]
        return states

    def targets_up(self) -> dict[str, float]:
        """``up`` per scraped address."""
        return {s["metric"]["instance"]: float(s["value"][1]) for s in self.query("up")}

    def wait(self, check: Any, what: str, timeout: float = 60) -> Any:
        """Until ``check()`` returns something true; that value."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if found := check():
                return found
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never showed {what}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate it and wait."""
        self.process.terminate()
        self.process.wait(timeout=30)
