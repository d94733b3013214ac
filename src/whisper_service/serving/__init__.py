"""Serving one process: how work is admitted and run, and how the process starts,
stays healthy and stops.

- ``runtime``: the process's state (``Runtime``), reached by the API through deps;
- ``startup``: the model resolved, loaded into its engine and warmed up;
- ``inflight``: the requests being served, for the drain;
- ``drain``: SIGTERM/SIGINT turned into a graceful drain;
- ``lifespan``: the app's start and stop, wiring the above together;
- ``health``: the background monitor behind /health;
- ``resources``: the CPUs and memory the container really grants.

What admits and runs the work (the scheduler, the audio budget) is ``capacity``, below
this package: jobs use it too, and serving never imports jobs.

gunicorn's own configuration is ``whisper_service.gunicorn_conf``, outside this
package: the gunicorn master imports it, and must not import what this package does
(prometheus_client) before it has set ``PROMETHEUS_MULTIPROC_DIR`` for its workers.
"""

from whisper_service.serving.drain import Drainer
from whisper_service.serving.health import HealthMonitor, Status
from whisper_service.serving.inflight import InFlightRequest, InFlightTracker
from whisper_service.serving.lifespan import lifespan
from whisper_service.serving.resources import available_cpus, memory_limit_bytes
from whisper_service.serving.runtime import Runtime
from whisper_service.serving.startup import (
    BOOT_ERROR_EXIT_CODE,
    EngineLoader,
    LoadedModel,
    load_engine,
    load_model,
    resolve_configured_model,
)

__all__ = [
    "BOOT_ERROR_EXIT_CODE",
    "Drainer",
    "EngineLoader",
    "HealthMonitor",
    "InFlightRequest",
    "InFlightTracker",
    "LoadedModel",
    "Runtime",
    "Status",
    "available_cpus",
    "lifespan",
    "load_engine",
    "load_model",
    "memory_limit_bytes",
    "resolve_configured_model",
]
