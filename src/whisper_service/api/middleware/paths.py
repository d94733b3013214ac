"""Which paths are which: the one place middleware, auth, rate limits, tracing and the
OpenAPI document ask whether a path is a probe or a push endpoint."""

from __future__ import annotations

# Probes and scrapes keep answering while draining: the platform reads them.
PROBE_PREFIXES = ("/health", "/v2/health", "/metrics")


# Pub/Sub's push endpoints check their own credentials (api.push_guard), before the
# body is read, not API keys; the subscription's flow control paces them, and failed
# credentials are limited per address there.
PUSH_PREFIX = "/internal/jobs/"


# The live transcription page's static files (api/page): they hold no secret.
PAGE_PATH = "/realtime"


def is_page(path: str) -> bool:
    """The live transcription page and its files, served without a key."""
    return path == PAGE_PATH or path.startswith(PAGE_PATH + "/")


def is_push(path: str) -> bool:
    """The job-delivery endpoints Pub/Sub pushes to."""
    return path.startswith(PUSH_PREFIX)


def is_probe(path: str) -> bool:
    """Health, readiness, KServe and metrics paths."""
    return path.startswith(PROBE_PREFIXES) or (
        path.startswith("/v2/models/") and path.endswith("/ready")
    )
