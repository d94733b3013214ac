"""Helpers shared by the tests: paths, the audio manifest, WER, a live server."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jiwer
from whisper.normalizers import EnglishTextNormalizer

REPO = Path(__file__).resolve().parents[1]
AUDIO = Path(os.environ.get("WHISPER_TEST_AUDIO", REPO.parent / "shared" / "audio"))
# Converted and assembled models survive between runs; CI starts without them.
MODEL_CACHE = Path(os.environ.get("WHISPER_TEST_MODEL_CACHE", REPO / ".cache" / "test-models"))
JFK_REFERENCE = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
LONG_AUDIO = "long/gwbush_radio_address_2008-11-01.wav"
# Threads for the server and the in-process raw engines alike, so both compute the
# same way whatever the machine has.
TEST_THREADS = 2

_normalizer = EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normaliser: case, punctuation, numbers, spellings."""
    return str(_normalizer(text))


def pooled_wer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Word error rate over all utterances together, after normalising both sides."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


@dataclass(frozen=True)
class ManifestEntry:
    """One row of ../shared/audio/manifest.tsv."""

    path: Path
    seconds: float
    language: str
    reference: str


def manifest() -> list[ManifestEntry]:
    """The rows of the shared audio manifest."""
    with (AUDIO / "manifest.tsv").open(newline="") as fp:
        rows = list(csv.DictReader(fp, delimiter="\t"))
    return [
        ManifestEntry(AUDIO / r["file"], float(r["seconds"]), r["language"], r["reference"])
        for r in rows
    ]


def ljspeech() -> list[ManifestEntry]:
    """The English LJSpeech utterances."""
    return [e for e in manifest() if e.path.name.startswith("ljspeech_")]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``whisper-service serve`` (gunicorn + uvicorn workers) in a subprocess on 127.0.0.1."""

    def __init__(self, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "APP_ENV": "development",
            "PORT": str(self.port),
            "WHISPER_HOST": "127.0.0.1",
            "WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "WHISPER_CPU_THREADS": str(TEST_THREADS),
            "WHISPER_LOG_FORMAT": "json",
            # Not the development preset's shared /tmp store: tests that want jobs say where.
            "WHISPER_JOBS_STORE": "",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0, *, uvicorn: bool = False) -> LiveServer:
        """Start (gunicorn via ``whisper-service serve``, or plain uvicorn) and wait until
        /health/ready answers 200."""
        log = self.log_path.open("wb")
        if uvicorn:
            command = [
                sys.executable, "-m", "uvicorn", "--factory", "whisper_service.app:app_from_env",
                "--host", "127.0.0.1", "--port", str(self.port),
            ]  # fmt: skip
        else:
            command = [str(Path(sys.executable).with_name("whisper-service")), "serve"]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, object]]:
        """The JSON log lines so far (other lines skipped)."""
        events = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
        return events

    def alive(self) -> bool:
        """The process runs and /health/live answers 200."""
        if self.process is None or self.process.poll() is not None:
            return False
        return httpx.get(f"{self.url}/health/live", timeout=5).status_code == 200

    def stop(self) -> int | None:
        """SIGTERM, then wait for the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
