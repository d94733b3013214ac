"""HTTP only: where a request is parsed, checked and answered.

- ``routes_*``: one router per surface (transcribe, openai, jobs, health, metrics,
  ``realtime``: live sessions over WebSocket, and ``internal``: where Pub/Sub pushes
  job deliveries);
- ``forms``: the form fields /transcribe and /jobs share;
- ``deps``: FastAPI dependencies (runtime, ready engine, jobs, caller);
- ``transcription``: the one pipeline every route calls (check, admit, decode,
  infer, render); ``sources``: uploads and gs:// objects to decoded audio;
- ``schemas``: the response models the OpenAPI document shows;
- ``errors``: the one JSON error shape; ``middleware``, ``auth``, ``rate_limit``,
  ``push_guard`` (Pub/Sub's credentials), ``origin`` (WebSocket handshakes): what is
  refused before a body is read.
"""

from whisper_service.api import (
    routes_health,
    routes_internal,
    routes_jobs,
    routes_metrics,
    routes_openai,
    routes_realtime,
    routes_transcribe,
)
from whisper_service.api.error_responses import install_error_handlers

ROUTERS = (
    routes_transcribe.router,
    routes_jobs.router,
    routes_openai.router,
    routes_realtime.router,
    routes_health.router,
)
# Mounted only where Pub/Sub pushes job deliveries (WHISPER_JOBS_QUEUE=pubsub).
PUSH_ROUTER = routes_internal.router
# Not on the service's port when WHISPER_METRICS_ACCESS=port.
METRICS_ROUTER = routes_metrics.router

__all__ = ["METRICS_ROUTER", "PUSH_ROUTER", "ROUTERS", "install_error_handlers"]
