"""The app's lifespan: start the model load, the health monitor, the drain handler and
(when a store is configured) the jobs; stop them in reverse on the way out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from whisper_service.config import Settings
from whisper_service.observability import metrics
from whisper_service.serving.drain import Drainer
from whisper_service.serving.health import HealthMonitor
from whisper_service.serving.runtime import Runtime, load_in_background
from whisper_service.storage import EMULATOR_ENV

log = structlog.get_logger(__name__)


def _check_gcs_credentials(settings: Settings) -> None:
    """Warn at startup, not at the first gs:// request, when Cloud Storage is configured
    and no credentials can be found (requests that need it then get 503
    storage_unavailable with the reason in the log). Blocking: run in a thread."""
    uses = {
        "WHISPER_GCS_ALLOWED_BUCKETS": bool(settings.gcs_allowed_buckets),
        "WHISPER_GCS_OUTPUT_URI": bool(settings.gcs_output_uri),
        "WHISPER_JOBS_FILES": (settings.jobs_files or "").startswith("gs://"),
    }
    configured = [name for name, used in uses.items() if used]
    if not configured or os.environ.get(EMULATOR_ENV):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as exc:
        log.warning("gcs_credentials_missing", configured=configured, reason=str(exc))


def _serve_metrics_port(runtime: Runtime) -> Callable[[], None] | None:
    """With WHISPER_METRICS_ACCESS=port and no gunicorn master to serve every worker's
    metrics (plain uvicorn), this process serves its own on the port."""
    settings = runtime.settings
    if settings.metrics_access != "port" or os.environ.get(metrics.MULTIPROC_ENV):
        return None
    return metrics.serve_on_port(settings.host, settings.metrics_port)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the health monitor, the drain handler, the model load and the jobs."""
    runtime: Runtime = app.state.runtime
    monitor = runtime.monitor = HealthMonitor(runtime.settings, runtime.model_state)
    monitor.start()
    drainer = Drainer(runtime)
    drainer.install()
    loader = asyncio.create_task(load_in_background(runtime))
    if runtime.start_jobs is not None:
        runtime.jobs = runtime.start_jobs(runtime)
    stop_metrics = _serve_metrics_port(runtime)
    credentials = asyncio.create_task(asyncio.to_thread(_check_gcs_credentials, runtime.settings))
    try:
        yield
    finally:
        credentials.cancel()
        if stop_metrics is not None:
            stop_metrics()
        loader.cancel()
        if runtime.jobs is not None:
            # A shutdown without the drain (gunicorn recycling the worker after
            # max_requests, an exception in the server) stops deliveries too: their
            # checkpoints stay, and the queue delivers them again.
            await runtime.jobs.stop_all()
            await runtime.jobs.close()
        await monitor.stop()
        drainer.uninstall()
        runtime.scheduler.close()
