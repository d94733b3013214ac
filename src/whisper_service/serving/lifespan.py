"""The app's lifespan: start the model load, the health monitor, the drain handler and
(when a store is configured) the jobs; stop them in reverse on the way out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import structlog
from fastapi import FastAPI

from whisper_service.config import Settings
from whisper_service.observability import metrics
from whisper_service.serving.drain import Drainer
from whisper_service.serving.health import HealthMonitor
from whisper_service.serving.runtime import Runtime, load_in_background
from whisper_service.serving.startup import BOOT_ERROR_EXIT_CODE
from whisper_service.storage import EMULATOR_ENV

if TYPE_CHECKING:
    from whisper_service.jobs.service import Jobs

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _opened(setting: str, open_part: Callable[[], T]) -> T:
    try:
        return open_part()
    except Exception as exc:
        log.critical("job_store_unusable", setting=setting, error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)


def _start_jobs(runtime: Runtime) -> Jobs:
    """Jobs on the configured store, files and queue, started; one that cannot be
    opened is a boot error naming the setting: a service that accepted jobs it cannot
    keep would lose them. (Imported here: a process without jobs never loads them.)"""
    from whisper_service.jobs.backends import open_files, open_queue, open_store
    from whisper_service.jobs.service import Jobs

    settings, monitor = runtime.settings, runtime.monitor
    store = _opened("WHISPER_JOBS_STORE", lambda: open_store(settings))
    files = _opened("WHISPER_JOBS_FILES", lambda: open_files(settings, runtime.storage))
    queue = _opened("WHISPER_JOBS_QUEUE", lambda: open_queue(settings))
    jobs = Jobs(
        settings,
        store,
        files,
        queue,
        runtime.scheduler,
        runtime.storage,
        lambda: runtime.engine,
        memory_critical=lambda: monitor is not None and monitor.memory_critical,
        audio_memory=runtime.audio_memory,
    )
    jobs.start()
    return jobs


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
    if runtime.settings.jobs_store:
        runtime.jobs = _start_jobs(runtime)
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
