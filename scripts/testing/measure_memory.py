#!/usr/bin/env python3
"""Peak memory of a server under hostile but valid load, on 127.0.0.1 only.

Starts ``whisper-service serve`` with a preset (production by default; auth and rate
limits off so the load reaches the model), then either:

- ``burst``: N uploads at once, each a small Opus file that decodes to M minutes;
- ``job``: one async job of M minutes of audio,

and samples the resident memory of the whole process tree every 100 ms for S seconds.
Prints one JSON object: idle and peak MiB, and how each request was answered. With
``--url`` and ``--pid`` it loads a server that already runs (a container of the image:
its process tree is visible from the host) instead of starting one.

    scripts/testing/measure_memory.py burst --requests 8 --minutes 30 --seconds 90 \
        --audio-memory-mib 658     # the budget a 2 GiB container derives

The speech is ../shared/audio's radio address, repeated; the Opus files are made here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO.parent / "shared" / "audio" / "long" / "gwbush_radio_address_2008-11-01.wav"
MIB = 2**20


def opus(minutes: float, target: Path) -> Path:
    """``minutes`` of speech as 6 kb/s Opus (a 30-minute file is 1.4 MB)."""
    from whisper_service.audio import decode_audio

    speech = decode_audio(SPEECH, max_seconds=600).samples
    total = int(minutes * 60 * 16_000)
    with av.open(str(target), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=16_000, layout="mono")
        stream.bit_rate = 6000
        for start in range(0, total, 160_000):
            indices = np.arange(start, min(start + 160_000, total)) % len(speech)
            pcm = (speech[indices] * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16_000, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Tree:
    """The server's process tree and its peak resident memory."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        total = 0
        for process in (self.root, *self.root.children(recursive=True)):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def watch(self) -> None:
        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.rss())
                time.sleep(0.1)

        threading.Thread(target=sample, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["burst", "job"])
    parser.add_argument("--env", default="production")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=90.0, help="how long to watch")
    parser.add_argument("--audio-memory-mib", type=int, default=0, help="0: derived")
    parser.add_argument(
        "--url", help="load a server already running there (a container) instead of one started"
    )
    parser.add_argument(
        "--pid",
        type=int,
        help="with --url: the server's root process as this machine sees it "
        "(a container's: docker inspect --format '{{.State.Pid}}')",
    )
    parser.add_argument("--api-key", default="", help="with --url: the bearer key it asks for")
    args = parser.parse_args()
    if bool(args.url) != bool(args.pid):
        parser.error("--url and --pid go together")
    work = Path(tempfile.mkdtemp(prefix="whisper-memory-"))
    audio = opus(args.minutes, work / "speech.opus").read_bytes()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.url:
        report = measure(args, args.url, headers, audio, args.pid)
    else:
        with started_server(args, work) as (url, pid):
            report = measure(args, url, headers, audio, pid)
    print(json.dumps(report))
    return 0


@contextlib.contextmanager
def started_server(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, int]]:
    """``whisper-service serve`` with the preset, ready: its URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": args.env,
        "PORT": str(port),
        "WHISPER_HOST": "127.0.0.1",
        "WHISPER_AUTH_REQUIRED": "false",
        "WHISPER_RATE_LIMIT_PER_MINUTE": "0",
        "WHISPER_METRICS_ACCESS": "open",
        "WHISPER_JOBS_STORE": str(work / "jobs"),
        "WHISPER_AUDIO_MEMORY_MIB": str(args.audio_memory_mib),
        "WHISPER_LOG_LEVEL": "WARNING",
    }
    serve = [str(Path(sys.executable).with_name("whisper-service")), "serve"]
    with (work / "server.log").open("wb") as log:
        process = subprocess.Popen(serve, env=env, stdout=log, stderr=log, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def measure(
    args: argparse.Namespace, url: str, headers: dict[str, str], audio: bytes, pid: int
) -> dict[str, object]:
    """Idle and peak resident memory of the process tree under the load."""
    tree = Tree(pid)
    idle = tree.rss()
    tree.peak = idle
    tree.watch()
    try:
        answers = run(args, url, headers, audio)
    finally:
        tree.stop()
    return {
        "scenario": args.scenario,
        "env": None if args.url else args.env,  # an attached server has its own
        "audio_minutes": args.minutes,
        "idle_mib": round(idle / MIB),
        "peak_mib": round(tree.peak / MIB),
        "answers": answers,
    }


def run(args: argparse.Namespace, url: str, headers: dict[str, str], audio: bytes) -> list[str]:
    """Send the load; how each request was answered (``pending``: still running)."""
    answers: list[str] = []
    if args.scenario == "job":
        accepted = httpx.post(
            f"{url}/jobs", files={"file": ("a.opus", audio)}, headers=headers, timeout=60
        )
        time.sleep(args.seconds)
        status = httpx.get(accepted.json()["status_url"], headers=headers, timeout=10)
        progress = status.json()["progress"]
        return [f"{accepted.status_code}: {progress['percent']} % after {args.seconds:g} s"]

    def call() -> None:
        try:
            response = httpx.post(
                f"{url}/transcribe",
                files={"file": ("a.opus", audio)},
                data={"language": "en"},
                headers=headers,
                timeout=args.seconds,
            )
        except httpx.TimeoutException:
            answers.append("pending")
            return
        code = "" if response.status_code == 200 else " " + response.json()["error"]["code"]
        answers.append(f"{response.status_code}{code}")

    threads = [threading.Thread(target=call) for _ in range(args.requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers)


if __name__ == "__main__":
    sys.exit(main())
