"""gunicorn's configuration module, as the master process loads it."""

from __future__ import annotations

import subprocess
import sys


def test_the_master_does_not_load_prometheus_before_the_workers_fork() -> None:
    # prometheus_client picks in-memory or multiprocess values when it is imported: if
    # the master imported it before on_starting set PROMETHEUS_MULTIPROC_DIR, every
    # forked worker would count in memory and /metrics would merge nothing.
    probe = (
        "import sys, whisper_service.gunicorn_conf as conf; "
        "print('prometheus_client' in sys.modules, conf.worker_class)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={"APP_ENV": "development", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert result.stdout.split() == ["False", "whisper_service.gunicorn_conf.Worker"], result.stderr
