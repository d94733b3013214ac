"""create_app(settings) -> FastAPI: wires the pieces together and owns nothing else."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from whisper_service import __version__
from whisper_service.api import routes_health, routes_openai, routes_transcribe
from whisper_service.api.auth import ApiKeyMiddleware
from whisper_service.api.errors import install_error_handlers
from whisper_service.api.middleware import (
    FORM_OVERHEAD_BYTES,
    BodySizeLimitMiddleware,
    DrainMiddleware,
    InFlightMiddleware,
    RequestIdMiddleware,
)
from whisper_service.api.rate_limit import RateLimitMiddleware
from whisper_service.lifecycle import Runtime, lifespan
from whisper_service.observability.logging import configure_logging
from whisper_service.scheduler import Scheduler
from whisper_service.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application for ``settings`` (from the environment when omitted)."""
    settings = settings or load_settings()
    settings.check_servable()
    configure_logging(settings)
    app = FastAPI(
        title="whisper-service",
        version=__version__,
        description="Whisper speech-to-text over HTTP (openai-whisper and faster-whisper).",
        lifespan=lifespan,
    )
    runtime = app.state.runtime = Runtime(
        settings=settings,
        scheduler=Scheduler(
            workers=settings.inference_workers,
            queue_size=settings.queue_size,
            queue_timeout=settings.queue_timeout_seconds,
        ),
    )
    install_error_handlers(app)
    for module in (routes_transcribe, routes_openai, routes_health):
        app.include_router(module.router)
    # Added innermost first. None of these reads the body, so every refusal (size,
    # rate, auth, drain) happens before an upload is received.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    )
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
        )
    keys = settings.all_api_keys()
    if settings.auth_required or keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys, public_probes=settings.health_public)
    app.add_middleware(InFlightMiddleware, tracker=runtime.in_flight)
    app.add_middleware(DrainMiddleware, is_draining=lambda: runtime.draining)
    if settings.cors_origins:
        # Outside auth: browsers send preflight requests without credentials.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and gunicorn: settings from the environment."""
    return create_app()
