"""HTTP and WebSocket only: where a request is parsed, checked and answered, in one
subpackage per audience.

- ``openai/``: ``/v1``, for the official SDK: its routes, the request as one form
  model (``request``), the answers and their schemas;
- ``native/``: the service's own ``/transcribe``, ``/detect-language`` and ``/jobs``,
  with the form they share;
- ``ops/``: health probes, ``/metrics``, and where Pub/Sub pushes job deliveries;
- ``middleware/``: what every request passes before a route runs (paths, request id,
  auth, rate limit, body limit, drain, access log, WebSocket origins, push
  credentials);
- ``live``: the WebSocket routes of live sessions (their protocols are in
  ``realtime/``); ``page``: the browser page that drives one (``GET /realtime``);
- shared by the routes: ``deps`` (FastAPI dependencies), ``transcription`` (the one
  pipeline: check, admit, decode, infer, render), ``request_audio`` (uploads and gs://
  objects to audio), ``sse`` (server-sent events), ``params``, ``schemas``
  (response models), ``openapi`` and ``error_responses`` (the one JSON error shape).
"""

from whisper_service.api import live, page
from whisper_service.api.error_responses import install_error_handlers
from whisper_service.api.native import jobs, transcribe
from whisper_service.api.openai import routes as openai_routes
from whisper_service.api.ops import metrics, probes, push

ROUTERS = (
    transcribe.router,
    jobs.router,
    openai_routes.router,
    live.router,
    page.router,
    probes.router,
)
# Mounted only where Pub/Sub pushes job deliveries (WHISPER_JOBS_QUEUE=pubsub).
PUSH_ROUTER = push.router
# Not on the service's port when WHISPER_METRICS_ACCESS=port.
METRICS_ROUTER = metrics.router

__all__ = ["METRICS_ROUTER", "PUSH_ROUTER", "ROUTERS", "install_error_handlers"]
