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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jiwer
from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

REPO = Path(__file__).resolve().parents[2]
AUDIO = Path(os.environ.get("WHISPER_TEST_AUDIO", REPO.parent / "shared" / "audio"))
# Converted and assembled models survive between runs; CI starts without them.
MODEL_CACHE = Path(os.environ.get("WHISPER_TEST_MODEL_CACHE", REPO / ".cache" / "test-models"))
JFK_REFERENCE = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
LONG_AUDIO = "long/gwbush_radio_address_2008-11-01.wav"
# No human transcript exists for the radio address: this is what tiny.en wrote for it
# here. Only compared with a loose bound, it tells a working pipeline (cut, batched,
# resumed) from one that drops or garbles whole passages.
LONG_AUDIO_SILVER = (
    "good morning this tuesday is election day after months of spirited debate in vigorous "
    "campaigning the time has come for americans to make important decisions about our "
    "nation is future and encourage all americans to go to the polls and vote election "
    "season brings out the spirit of competition between our political parties and that "
    "competition is an essential part of a healthy democracy but as the campaigns come to a "
    "close republicans democrats and independents can find common ground on at least one "
    "point our system of representative democracy is one of america is greatest strengths "
    "the united states was founded on the belief that all men are created equal every "
    "election day 1000000s of americans of all races religions and backgrounds step into "
    "voting booths throughout the nation whether they are richer poor older young each of "
    "them has an equal share in choosing the path that our country will take and every "
    "ballot they cast is a reminder that our founding principles are alive and well voting "
    "is one of the great privileges of american citizenship and it has always required "
    "brave defenders as you head to the polls next week remember the sacrifices that had "
    "been made by generations of americans in uniform to preserve our way of life from "
    "bunker hill to baghdad the men and women of american armed forces have been devoted "
    "guardians of our democracy all of us owe them and their families a special debt of "
    "gratitude on election day americans should also remember the important example that "
    "our elections set throughout the world young democracies from georgia and ukraine to "
    "afghanistan and iraq can look to the united states for proof that self government can "
    "endure and nations that still have under tyranny and oppression can find hope and "
    "inspiration in our commitment to liberty for more than 2 centuries americans have "
    "demonstrated the ability of free people to choose their own leaders our nation has "
    "flourished because of its commitment to trusting the wisdom of our citizenry in this "
    "year is election we will see this tradition continue and we will be reminded once "
    "again that we are blessed to live in a free nation guided by the will of the people "
    "thank you for listening"
)
# From ../shared/audio/README.md: how these recordings begin.
MULTILINGUAL_START = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of the software"
)
HOTWORDS_REFERENCE = "Then you go into your ComfyUI folder again in the ComfyUI"
# Bounds on word error rates: model output differs between machines (int8 kernels,
# thread counts), so no test compares it as a string.
JFK_MAX_WER = 0.1  # two words of 22
LONG_AUDIO_MAX_WER = 0.25
# Threads for the server and the in-process raw engines alike, so both compute the
# same way whatever the machine has.
TEST_THREADS = 2

_normalizer = EnglishTextNormalizer()
_basic_normalizer = BasicTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normaliser: case, punctuation, numbers, spellings."""
    return str(_normalizer(text))


def pooled_wer(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """Word error rate over all utterances together, after normalising both sides."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def word_error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    """WER of one transcript after normalising both sides (Whisper's English normaliser,
    or its basic one for other languages); 1.0 for an empty hypothesis."""
    norm = normalize if language == "en" else _basic_normalizer
    ref, hyp = str(norm(reference)), str(norm(hypothesis))
    if not hyp.strip():
        return 1.0
    return float(jiwer.wer(ref, hyp))


def assert_transcript(
    hypothesis: str, reference: str, max_wer: float, language: str = "en"
) -> None:
    """The transcript is within ``max_wer`` of the reference, both normalised."""
    wer = word_error_rate(reference, hypothesis, language)
    assert wer <= max_wer, f"WER {wer:.3f} > {max_wer}: {hypothesis!r}"


def assert_begins_like(hypothesis: str, reference_start: str, max_wer: float) -> None:
    """The transcript's first words are within ``max_wer`` of a reference for how the
    recording begins (for long files whose full transcript nobody wrote down)."""
    ref = normalize(reference_start).split()
    head = " ".join(normalize(hypothesis).split()[: len(ref)])
    assert_transcript(head, " ".join(ref), max_wer)


def assert_jfk(hypothesis: str) -> None:
    """A transcript of jfk.flac, as a working model on a working pipeline gives it."""
    assert_transcript(hypothesis, JFK_REFERENCE, JFK_MAX_WER)


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


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a log, one per line (other lines skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


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

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (other lines skipped)."""
        return json_lines(self.logs())

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


def wait_in_flight(url: str, count: int, timeout: float = 60) -> None:
    """Until the server at ``url`` has ``count`` requests in flight and inference
    running (its /health report), so that a signal sent next finds them there."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        report = httpx.get(f"{url}/health", timeout=5).json()
        if report["in_flight_count"] >= count and report["queue"]["running"] >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {count} requests in flight")


@contextlib.contextmanager
def running(log_dir: Path, **env: str) -> Iterator[LiveServer]:
    """A started LiveServer, stopped on the way out."""
    server = LiveServer(log_dir, **env).start()
    try:
        yield server
    finally:
        server.stop()
