"""gcp-storage-emulator on 127.0.0.1, for the real google-cloud-storage client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port


class Emulator:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        binary = str(Path(sys.executable).with_name("gcp-storage-emulator"))
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            try:
                httpx.get(f"{self.url}/storage/v1/b", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the storage emulator did not start")

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def requests_log(self) -> str:
        return self.log.read_text(errors="replace")
