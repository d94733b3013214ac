"""create_app(settings) -> FastAPI: wires the pieces together and owns nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from whisper_service import __version__
from whisper_service.api import routes_health, routes_openai, routes_transcribe
from whisper_service.api.errors import install_error_handlers
from whisper_service.api.middleware import (
    FORM_OVERHEAD_BYTES,
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
)
from whisper_service.lifecycle import Runtime, lifespan
from whisper_service.observability.logging import configure_logging
from whisper_service.scheduler import Scheduler
from whisper_service.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI application for ``settings`` (from the environment when omitted)."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = FastAPI(
        title="whisper-service",
        version=__version__,
        description="Whisper speech-to-text over HTTP (openai-whisper and faster-whisper).",
        lifespan=lifespan,
    )
    app.state.runtime = Runtime(
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
    # Outermost last: the request id must cover the size limit's own 413 answers.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    )
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and gunicorn: settings from the environment."""
    return create_app()
