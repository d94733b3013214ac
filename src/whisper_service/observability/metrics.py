"""Prometheus metrics, correct under gunicorn with several workers.

Multiprocess mode (prometheus-client): when ``PROMETHEUS_MULTIPROC_DIR`` is set (the
gunicorn config sets it in the master, wiped at start, before workers fork), every
worker writes its samples to files there and ``/metrics`` merges them; a dead
worker's live gauges are dropped by ``mark_process_dead`` in gunicorn's
``child_exit`` hook. Each gauge states how it merges across workers. Without the
variable (plain uvicorn) the default in-process registry is used.

Labels are bounded: route templates, never raw paths; reasons from a fixed set.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

NAMESPACE = "whisper"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a probe (1 ms) to a long transcription (10 min).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
AUDIO_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)

# Every reason a request can be refused (metric label values).
REJECTION_REASONS = (
    "queue_full",
    "queue_timeout",
    "deadline",
    "draining",
    "too_large",
    "too_long",
    "unsupported_media",
    "rate_limited",
    "unauthorized",
    "memory",
    "unreachable",
)
# Error codes of the API -> rejection reason.
REJECTION_BY_CODE = {
    "queue_full": "queue_full",
    "queue_timeout": "queue_timeout",
    "deadline_exceeded": "deadline",
    "shutting_down": "draining",
    "file_too_large": "too_large",
    "audio_too_long": "too_long",
    "undecodable_audio": "unsupported_media",
    "no_audio_stream": "unsupported_media",
    "empty_audio": "unsupported_media",
    "rate_limited": "rate_limited",
    "missing_api_key": "unauthorized",
    "invalid_api_key": "unauthorized",
    "memory_pressure": "memory",
    "deadline_unreachable": "unreachable",
}

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    namespace=NAMESPACE,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from request start to the end of the response, by method and route template.",
    ["method", "route"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "inference_seconds",
    "Engine time per request (decoding of tokens, not audio decoding or queueing).",
    ["engine", "model", "task"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
AUDIO_SECONDS_TOTAL = Counter(
    "audio_seconds_total",
    "Seconds of audio transcribed.",
    ["engine", "model", "task"],
    namespace=NAMESPACE,
)
AUDIO_DURATION = Histogram(
    "audio_duration_seconds",
    "Length of each transcribed input.",
    ["engine", "model", "task"],
    namespace=NAMESPACE,
    buckets=AUDIO_BUCKETS,
)
REALTIME_FACTOR = Histogram(
    "realtime_factor",
    "Inference seconds per second of audio (lower is faster; 1 = real time).",
    ["engine", "model"],
    namespace=NAMESPACE,
    buckets=RTF_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "queue_depth",
    "Requests waiting for an inference worker.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
QUEUE_CAPACITY = Gauge(
    "queue_capacity",
    "Requests that may wait for an inference worker (the queue size), summed over workers.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
INFERENCE_WORKERS = Gauge(
    "inference_workers",
    "Inference threads, summed over live workers.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
DIARIZATION_SECONDS = Histogram(
    "diarization_seconds",
    "Time to find the speakers of one input and label its transcript, by mode "
    "(voices: embeddings and clustering; channel: one speaker per channel).",
    ["mode"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
DIARIZATION_SPEAKERS = Histogram(
    "diarization_speakers",
    "Speakers found in one diarized input.",
    ["mode"],
    namespace=NAMESPACE,
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 16),
)
REALTIME_SESSIONS = Gauge(
    "realtime_sessions",
    "Live WebSocket transcription sessions open now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
REALTIME_REFUSED = Counter(
    "realtime_sessions_refused_total",
    "Live sessions refused at the handshake, by reason (too_many_sessions, unavailable, "
    "unsupported_intent).",
    ["reason"],
    namespace=NAMESPACE,
)
REALTIME_AUDIO_SECONDS = Counter(
    "realtime_audio_seconds_total",
    "Seconds of audio streamed into live sessions.",
    namespace=NAMESPACE,
)
REALTIME_LATENCY = Histogram(
    "realtime_latency_seconds",
    "Live sessions: final = end of a turn to its completed event; partial = start of "
    "speech to the turn's first delta.",
    ["kind"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
BATCH_MAX_SIZE = Gauge(
    "batch_max_size",
    "Requests whose model calls one batch may hold: WHISPER_BATCH_MAX_SIZE with "
    "faster-whisper, 1 with openai-whisper (which cannot batch).",
    namespace=NAMESPACE,
    multiprocess_mode="max",
)
BATCH_SIZE = Histogram(
    "batch_size",
    "Windows per model call once calls from concurrent requests are gathered (generate, "
    "generate_fallback: a temperature fallback's re-decode, detect_language; encode is "
    "never gathered: one request's windows); 1: it ran alone.",
    ["call"],
    namespace=NAMESPACE,
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
BATCH_WAIT = Histogram(
    "batch_wait_seconds",
    "Time a model call waited for others to batch with, per call.",
    ["call"],
    namespace=NAMESPACE,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
QUEUE_WAIT = Histogram(
    "queue_wait_seconds",
    "Time a request waited for an inference worker.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
INFERENCE_RUNNING = Gauge(
    "inference_running",
    "Inferences running now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
IN_FLIGHT = Gauge(
    "inflight_requests",
    "HTTP requests being served (probes excluded).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
REJECTIONS = Counter(
    "rejections_total",
    "Requests refused, by reason.",
    ["reason"],
    namespace=NAMESPACE,
)
MODEL_LOADED = Gauge(
    "model_loaded",
    "1 when every live worker has its model loaded.",
    ["engine", "model"],
    namespace=NAMESPACE,
    multiprocess_mode="livemin",
)
MODEL_LOAD_SECONDS = Gauge(
    "model_load_seconds",
    "Time the slowest live worker took to load and warm up its model.",
    ["engine", "model"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
HEALTH_STATUS = Gauge(
    "health_status",
    "Health check verdict: 0 healthy, 1 degraded, 2 unhealthy (worst live worker).",
    ["check"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
DRAINING = Gauge(
    "draining",
    "1 while a worker drains after SIGTERM.",
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
JOB_DELIVERIES_RUNNING = Gauge(
    "job_deliveries_running",
    "Job deliveries (plans and units) this instance works on now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
JOB_DELIVERIES = Counter(
    "job_deliveries_total",
    "Job deliveries done here, by kind (plan, unit) and outcome: done, retry (given back "
    "to the queue), skipped (the job had ended), failed (it ended the job).",
    ["kind", "outcome"],
    namespace=NAMESPACE,
)
JOBS_FINISHED = Counter(
    "jobs_finished_total",
    "Async jobs that ended here, by final status.",
    ["status"],
    namespace=NAMESPACE,
)
JOBS_DEAD_LETTERED = Counter(
    "jobs_dead_lettered_total",
    "Job deliveries that failed on every attempt (the job failed with the reason).",
    namespace=NAMESPACE,
)
BUILD_INFO = Gauge(
    "build_info",
    "Always 1; labels carry the version and configuration.",
    ["version", "engine", "model", "app_env"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)


def initialise(version: str, engine: str, model: str, app_env: str) -> None:
    """Set the constant series and create every labelled series at zero, so rates and
    alerts see a 0 rather than no data."""
    BUILD_INFO.labels(version, engine, model, app_env).set(1)
    MODEL_LOADED.labels(engine, model).set(0)
    for reason in REJECTION_REASONS:
        REJECTIONS.labels(reason)
    DRAINING.set(0)


def _registry() -> CollectorRegistry:
    """Every live worker's samples when multiprocess, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def serve_on_port(host: str, port: int) -> Callable[[], None]:
    """Serve /metrics on a port of its own (WHISPER_METRICS_ACCESS=port: a sidecar in
    the same instance scrapes it; the service's own port does not serve it); returns
    what stops it."""
    server, thread = start_http_server(port, addr=host, registry=_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type, merged across workers when multiprocess."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST
