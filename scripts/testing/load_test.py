#!/usr/bin/env python3
"""Load benchmark: N concurrent clients against a whisper-service on this machine.

    python scripts/testing/load_test.py --start --clients 4 --duration 30 \
        --file ../shared/audio/jfk.flac [--env WHISPER_INFERENCE_WORKERS=2 ...]
    python scripts/testing/load_test.py --url http://127.0.0.1:8080 --clients 2 ...

Reports, as one JSON object: completed requests and errors by status, throughput
(requests and audio seconds per second), latency percentiles, `/health/live` latency
percentiles measured during the load, and the server's peak resident memory (whole
process tree, when the script started the server or was given --pid).

With --long-file, one more client sends that (long) recording back to back beside the
others: its requests are reported apart under "long" (the mix of short clips with one
long recording); requests/s (over the short clips' own span) and latency are the short clips', audio
seconds/s all requests'.

Bounded: traffic goes only to loopback addresses, for at most --duration seconds and
--max-requests requests, then it stops by itself.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (empty input: zeros)."""
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(1000 * ordered[-1], 1), "n": len(ordered)}  # fmt: skip


def require_loopback(url: str) -> None:
    """Refuse any target but this machine."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to load {host!r}: only loopback addresses may be targeted")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def start_server(env_overrides: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`whisper-service serve` on 127.0.0.1:port with the development preset."""
    env = {**os.environ, "APP_ENV": "development", "PORT": str(port),
           "WHISPER_HOST": "127.0.0.1", "WHISPER_LOG_FORMAT": "json",
           "WHISPER_LOG_LEVEL": "WARNING", **env_overrides}  # fmt: skip
    command = [str(Path(sys.executable).with_name("whisper-service")), "serve"]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def wait_ready(url: str, timeout: float) -> float:
    """Seconds until /health/ready answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {timeout} s")


def run_load(
    url: str,
    audio: tuple[str, bytes],
    clients: int,
    duration: float,
    max_requests: int,
    fields: dict[str, str],
    pid: int | None,
    long_audio: tuple[str, bytes] | None = None,
) -> dict[str, Any]:
    """Drive the load and measure; returns the report. ``audio`` and ``long_audio``
    are (file name, bytes)."""
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    latencies: list[float] = []
    long_latencies: list[float] = []
    statuses: dict[str, int] = {}
    audio_seconds = 0.0
    sent = 0
    health: list[float] = []
    peak_rss = 0
    stop = threading.Event()

    def client(file: tuple[str, bytes], measured: list[float]) -> None:
        nonlocal sent, audio_seconds
        with httpx.Client(timeout=600) as http:
            while time.monotonic() < deadline:
                with lock:
                    if sent >= max_requests:
                        return
                    sent += 1
                started = time.perf_counter()
                try:
                    response = http.post(f"{url}/transcribe", files={"file": file}, data=fields)
                    key = str(response.status_code)
                except httpx.HTTPError as exc:
                    response, key = None, type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
                    if response is not None and response.status_code == 200:
                        measured.append(elapsed)
                        audio_seconds += float(response.json()["duration"])

    def probe() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    http.get(f"{url}/health/live")
                    health.append(time.perf_counter() - started)
                except httpx.HTTPError:
                    health.append(10.0)
                stop.wait(0.05)

    def sample_memory() -> None:
        nonlocal peak_rss
        while not stop.is_set() and pid is not None:
            peak_rss = max(peak_rss, tree_rss(pid))
            stop.wait(0.2)

    helpers = [threading.Thread(target=probe), threading.Thread(target=sample_memory)]
    workers = [threading.Thread(target=client, args=(audio, latencies)) for _ in range(clients)]
    if long_audio is not None:
        workers.append(threading.Thread(target=client, args=(long_audio, long_latencies)))
    started = time.monotonic()
    for thread in helpers + workers:
        thread.start()
    for thread in workers[:clients]:
        thread.join()
    # The short clips' rate over their own span: the long recording's last request
    # may run on after them.
    wall = time.monotonic() - started
    for thread in workers[clients:]:
        thread.join()
    whole = time.monotonic() - started
    stop.set()
    for thread in helpers:
        thread.join()
    ok = len(latencies)
    report: dict[str, Any] = {
        "clients": clients,
        "wall_seconds": round(wall, 2),
        "completed": ok,
        "statuses": statuses,
        "errors": sum(n for k, n in statuses.items() if k != "200"),
        "throughput_rps": round(ok / wall, 3),
        "audio_seconds_per_second": round(audio_seconds / whole, 2),
        "latency": percentiles(latencies),
        "mean_latency_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "health_live": percentiles(health),
        "peak_rss_mib": round(peak_rss / 2**20) if pid is not None else None,
    }
    if long_audio is not None:
        report["long"] = {"file": long_audio[0], "completed": len(long_latencies),
                          "latency": percentiles(long_latencies)}  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, optionally start a server, run the load, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="an already running server on this machine")
    target.add_argument("--start", action="store_true", help="start `whisper-service serve`")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for --start")
    parser.add_argument("--pid", type=int, help="server pid to measure memory (with --url)")
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--long-file", type=Path, help="one more client sends this file")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=1000)
    parser.add_argument("--field", action="append", default=[], help="form field k=v")
    args = parser.parse_args(argv)
    fields = dict(f.split("=", 1) for f in args.field)
    audio = (args.file.name, args.file.read_bytes())
    long_audio = (args.long_file.name, args.long_file.read_bytes()) if args.long_file else None
    process = None
    report: dict[str, Any] = {}
    if args.start:
        url = f"http://127.0.0.1:{args.port}"
        env = dict(e.split("=", 1) for e in args.env)
        process = start_server(env, args.port, Path(f"/tmp/load-test-{args.port}.log"))  # noqa: S108
        # Process start to ready: the cold start, model load and warm-up included.
        report["ready_seconds"] = round(wait_ready(url, 300), 2)
        report["idle_rss_mib"] = round(tree_rss(process.pid) / 2**20)
        pid: int | None = process.pid
        report["server_env"] = env
    else:
        url = args.url.rstrip("/")
        require_loopback(url)
        pid = args.pid
    try:
        report.update(
            run_load(
                url,
                audio,
                args.clients,
                args.duration,
                args.max_requests,
                fields,
                pid,
                long_audio,
            )
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps(report))
    return 0 if report["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
