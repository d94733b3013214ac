#!/usr/bin/env python3
"""Peak memory of a server under hostile but valid load, on 127.0.0.1 only.

Starts ``whisper-service serve`` with a preset (production by default; auth and rate
limits off so the load reaches the model), then either:

- ``burst``: N uploads at once, each a small Opus file that decodes to M minutes;
- ``job``: one async job of M minutes of audio,

and samples the resident memory of the whole process tree every 100 ms for S seconds.
Prints one JSON object: idle and peak MiB, and how each request was answered.

    scripts/testing/measure_memory.py burst --requests 8 --minutes 30 --seconds 90 \
        --audio-memory-mib 658     # the budget a 2 GiB container derives

The speech is ../shared/audio's radio address, repeated; the Opus files are made here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="whisper-memory-"))
    audio = opus(args.minutes, work / "speech.opus").read_bytes()
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
        tree = Tree(process.pid)
        idle = tree.rss()
        tree.peak = idle
        tree.watch()
        answers = run(args, url, audio)
        tree.stop()
        report = {
            "scenario": args.scenario,
            "env": args.env,
            "audio_minutes": args.minutes,
            "idle_mib": round(idle / MIB),
            "peak_mib": round(tree.peak / MIB),
            "answers": answers,
        }
    finally:
        process.terminate()
        process.wait(30)
    print(json.dumps(report))
    return 0


def run(args: argparse.Namespace, url: str, audio: bytes) -> list[str]:
    """Send the load; how each request was answered (``pending``: still running)."""
    answers: list[str] = []
    if args.scenario == "job":
        accepted = httpx.post(f"{url}/jobs", files={"file": ("a.opus", audio)}, timeout=60)
        time.sleep(args.seconds)
        progress = httpx.get(accepted.json()["status_url"], timeout=10).json()["progress"]
        return [f"{accepted.status_code}: {progress['percent']} % after {args.seconds:g} s"]

    def call() -> None:
        try:
            response = httpx.post(
                f"{url}/transcribe",
                files={"file": ("a.opus", audio)},
                data={"language": "en"},
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
