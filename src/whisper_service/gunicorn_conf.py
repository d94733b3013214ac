"""gunicorn settings, derived from Settings so the served config matches the code's.

Used as ``gunicorn -c python:whisper_service.serving.gunicorn_conf``.

* Workers: ``WHISPER_WEB_WORKERS`` (1 by default). Each worker holds its own model and
  runs ``inference_workers`` threads sized from the container's CPU limit
  (``Settings.threads_per_worker``), so one worker already uses every CPU; more
  workers only multiply memory.
* Preload: off. torch's and CTranslate2's thread pools do not survive ``fork()``, so
  each worker imports them and loads its model after the fork.
* Shutdown: on SIGTERM the master forwards SIGTERM to each worker, whose app drains
  (``serving.drain.Drainer``); ``graceful_timeout`` is the platform's grace period, so
  the master never SIGKILLs a worker before the platform would, and the settings
  validation keeps the drain (plus a margin to answer what it cancelled) inside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar

from gunicorn.glogging import Logger
from uvicorn_worker import UvicornWorker

from whisper_service.config import load_settings
from whisper_service.observability.logging import configure_logging

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_settings = load_settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_workers


class Worker(UvicornWorker):
    """uvicorn's worker, with a WebSocket message limit fit for live sessions: twice
    the largest event a session reads (larger ones get the error event they deserve),
    not uvicorn's 16 MiB, whose unmasking alone holds the event loop for tenths of a
    second. A message past it is refused from its frame header: close 1009."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "ws_max_size": 2 * _settings.realtime_max_message_bytes,
    }


worker_class = "whisper_service.gunicorn_conf.Worker"
preload_app = False
timeout = _settings.gunicorn_timeout_seconds
graceful_timeout = _settings.graceful_timeout_seconds
keepalive = 5
# Recycling bounds slow leaks (allocator fragmentation in long-lived torch processes);
# the jitter keeps workers from restarting together.
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
forwarded_allow_ips = _settings.forwarded_allow_ips
# The heartbeat file on tmpfs: a disk-backed /tmp can stall heartbeats under I/O load.
_SHM = "/dev/shm"  # noqa: S108 - tmpfs on purpose, not a predictable temp file
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
# Access lines come from uvicorn through structured logging; gunicorn's would double them.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
proc_name = "whisper-service"
# gunicorn >= 24 opens a control socket under $HOME by default: nothing here uses it,
# and a read-only root filesystem cannot hold it.
control_socket_disable = True


class JsonLogger(Logger):
    """gunicorn's own lines (master and worker lifecycle) through the service's JSON
    logging, so every line the process writes is one JSON object."""

    def setup(self, cfg: Any) -> None:
        """Let gunicorn configure, then route its loggers to the root handler."""
        super().setup(cfg)
        configure_logging(_settings)
        for log in (self.error_log, self.access_log):
            log.handlers = []
            log.propagate = True


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    """Give the workers an empty Prometheus multiprocess directory (inherited through
    the environment when they fork): stale files from an earlier run would add dead
    workers' counts to this one's."""
    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="whisper-metrics-")
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory, mode=0o700)
    os.environ[MULTIPROC_ENV] = directory


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (in-flight, queue depth...) from the scrape."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def when_ready(server: Any) -> None:
    """Make SIGINT drain like SIGTERM (gunicorn's own SIGINT is a quick shutdown that
    skips the drain; a Ctrl-C or a platform that sends SIGINT must not drop requests),
    and with WHISPER_METRICS_ACCESS=port serve every worker's metrics from here."""
    server.handle_int = server.handle_term
    if _settings.metrics_access == "port":
        # Imported only now: on_starting has set PROMETHEUS_MULTIPROC_DIR.
        from whisper_service.observability.metrics import serve_on_port

        serve_on_port(_settings.host, _settings.metrics_port)
