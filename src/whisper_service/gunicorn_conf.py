"""gunicorn settings, derived from Settings so the served config matches the code's.

Used as ``gunicorn -c python:whisper_service.gunicorn_conf``. The app is not
preloaded: each worker imports torch and loads its model after the fork, because
torch's thread pools and CTranslate2's do not survive fork().
"""

from __future__ import annotations

import os

from whisper_service.settings import load_settings

_settings = load_settings()

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_workers
worker_class = "uvicorn_worker.UvicornWorker"
preload_app = False
# Inference runs off the event loop, so a worker that misses heartbeats this long
# is truly stuck, not busy.
timeout = int(_settings.request_timeout_seconds) + 30
graceful_timeout = 10
keepalive = 5
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
