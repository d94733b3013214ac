#!/usr/bin/env python3
"""Smoke test of a deployed whisper-service: readiness, the health report, one real
transcription of a bundled clip, and the metrics endpoint. Exits 1 on any failure.

    python3 scripts/testing/smoke.py https://whisper-service-xyz.a.run.app \
        [--api-key KEY] [--id-token TOKEN]

Standard library only, so it runs in Cloud Build's cloud-sdk image. The API key goes in
``X-API-Key`` because, behind Cloud Run IAM, ``Authorization`` carries the ID token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

CLIP = Path(__file__).with_name("data") / "smoke.flac"
EXPECTED_WORDS = ("fellow", "americans")  # the clip: "And so my fellow Americans, ask not"


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


def request(
    url: str, headers: dict[str, str], body: bytes | None = None, content_type: str = ""
) -> tuple[int, bytes]:
    """One HTTP call; (status, body) whatever the status."""
    req = urllib.request.Request(url, data=body, headers=dict(headers))  # noqa: S310 - URL given by the operator
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def multipart(fields: dict[str, str], file_field: str, path: Path) -> tuple[bytes, str]:
    """A multipart/form-data body with one file."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{path.name}"\r\nContent-Type: audio/flac\r\n\r\n'.encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wait_ready(base: str, headers: dict[str, str], timeout: float) -> None:
    """Poll /health/ready until 200 (a new revision may still be loading its model)."""
    give_up = time.monotonic() + timeout
    status = 0
    while time.monotonic() < give_up:
        status, _ = request(f"{base}/health/ready", headers)
        if status == 200:
            return
        time.sleep(2)
    raise SmokeFailure(f"/health/ready answered {status}, not 200, for {timeout:g} s")


def run(base: str, headers: dict[str, str], ready_timeout: float) -> list[str]:
    """Every check in order; returns what passed, raises SmokeFailure on the first failure."""
    passed = []
    wait_ready(base, headers, ready_timeout)
    passed.append("ready")
    status, body = request(f"{base}/health", headers)
    report = json.loads(body)
    if status != 200 or report.get("status") not in ("healthy", "degraded"):
        raise SmokeFailure(f"/health answered {status} with status {report.get('status')!r}")
    passed.append(f"health {report['status']} (model {report.get('model')})")
    form, content_type = multipart({"language": "en"}, "file", CLIP)
    status, body = request(f"{base}/transcribe", headers, form, content_type)
    if status != 200:
        raise SmokeFailure(f"/transcribe answered {status}: {body[:300]!r}")
    text = json.loads(body)["text"]
    if not all(word in text.lower() for word in EXPECTED_WORDS):
        raise SmokeFailure(f"/transcribe returned {text!r}, expected {EXPECTED_WORDS}")
    passed.append(f"transcription: {text!r}")
    status, body = request(f"{base}/metrics", headers)
    scrape = body.decode()
    if status != 200 or "whisper_http_requests_total" not in scrape:
        raise SmokeFailure(f"/metrics answered {status} without whisper_http_requests_total")
    if 'route="/transcribe"' not in scrape:
        raise SmokeFailure("/metrics does not count the transcription just made")
    passed.append("metrics")
    return passed


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the checks, print the outcome."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="base URL of the service")
    parser.add_argument("--api-key", help="sent as X-API-Key")
    parser.add_argument("--id-token", help="sent as Authorization: Bearer (Cloud Run IAM)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    headers = {"User-Agent": "whisper-service-smoke/1"}
    if args.api_key:
        headers["X-API-Key"] = args.api_key
    if args.id_token:
        headers["Authorization"] = f"Bearer {args.id_token}"
    try:
        for check in run(args.url.rstrip("/"), headers, args.ready_timeout):
            print(f"ok: {check}")
    except (SmokeFailure, OSError, ValueError, KeyError) as exc:
        print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
