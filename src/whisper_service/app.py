"""create_app(settings) -> FastAPI: wires the pieces together and owns nothing else."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.routing import Match
from starlette.types import Scope

from whisper_service import __version__
from whisper_service.api import (
    METRICS_ROUTER,
    PUSH_ROUTER,
    ROUTERS,
    install_error_handlers,
    openapi,
)
from whisper_service.api.middleware.access_log import AccessMiddleware
from whisper_service.api.middleware.auth import ApiKeyMiddleware, KeyIds
from whisper_service.api.middleware.body_limit import FORM_OVERHEAD_BYTES, BodySizeLimitMiddleware
from whisper_service.api.middleware.draining import DrainMiddleware, InFlightMiddleware
from whisper_service.api.middleware.origin import WebSocketOriginMiddleware
from whisper_service.api.middleware.paths import PROBE_PREFIXES
from whisper_service.api.middleware.push_guard import PushGuardMiddleware
from whisper_service.api.middleware.rate_limit import RateLimitMiddleware
from whisper_service.api.middleware.request_id import RequestIdMiddleware
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import Settings, load_settings
from whisper_service.jobs.push_auth import PushAuth
from whisper_service.observability import metrics, tracing
from whisper_service.observability.logging import configure_logging
from whisper_service.observability.redaction import redact_span
from whisper_service.observability.telemetry import telemetry
from whisper_service.serving.lifespan import lifespan
from whisper_service.serving.runtime import BackgroundJobs, Runtime
from whisper_service.serving.startup import BOOT_ERROR_EXIT_CODE, EngineLoader, load_model

log = structlog.get_logger(__name__)
T = TypeVar("T")

UNMATCHED_ROUTE = "unmatched"


def route_resolver(app: FastAPI) -> Callable[[Scope], str]:
    """Route template of a request: the matched route, or, for requests refused before
    routing (auth, rate, drain), the route they would have matched."""

    def route_of(scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return str(route.path)
        for candidate in app.router.routes:
            match, _ = candidate.matches(scope)
            if match is Match.FULL and hasattr(candidate, "path"):
                return str(candidate.path)
        return UNMATCHED_ROUTE

    return route_of


def _opened(setting: str, open_part: Callable[[], T]) -> T:
    try:
        return open_part()
    except Exception as exc:
        log.critical("job_store_unusable", setting=setting, error=str(exc))
        os._exit(BOOT_ERROR_EXIT_CODE)


def _start_jobs(runtime: Runtime) -> BackgroundJobs:
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


def create_app(
    settings: Settings | None = None,
    *,
    engine_loader: EngineLoader = load_model,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: otel_metrics.MeterProvider | None = None,
) -> FastAPI:
    """The ASGI application for ``settings`` (from the environment when omitted).

    ``engine_loader`` loads the model at startup (tests pass a stand-in). Tracer and
    meter providers default to ones built from the standard OTEL_* environment
    (OTLP/HTTP exporters when an endpoint is set).
    """
    settings = settings or load_settings()
    settings.check_servable()
    configure_logging(settings)
    tracer_provider = tracer_provider or tracing.build_tracer_provider(settings)
    meter_provider = meter_provider or tracing.build_meter_provider(settings)
    tracing.install_propagators()
    telemetry.configure(tracer_provider, tracing.meter(meter_provider))
    metrics.initialise(__version__, settings.engine.value, settings.model, settings.app_env.value)
    app = FastAPI(
        title="whisper-service",
        version=__version__,
        description="Whisper speech-to-text over HTTP (openai-whisper and faster-whisper).",
        lifespan=lifespan,
    )
    runtime = app.state.runtime = Runtime(
        settings=settings,
        load=engine_loader,
        scheduler=Scheduler(
            workers=settings.inference_workers,
            queue_size=settings.queue_size,
            queue_timeout=settings.queue_timeout_seconds,
            batch_size=settings.batch_size,
        ),
        start_jobs=_start_jobs if settings.jobs_store else None,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.push_routes:
        app.include_router(PUSH_ROUTER)
    if settings.metrics_access != "port":
        app.include_router(METRICS_ROUTER)
    openapi.install(app)
    # Added innermost first. None of these reads the body, so every refusal (size,
    # rate, auth, drain) happens before an upload is received.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, overhead=FORM_OVERHEAD_BYTES
    )
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
            push_exempt=settings.push_routes,
        )
    keys = settings.all_api_keys()
    if settings.auth_required or keys:
        secret = settings.key_id_secret
        app.add_middleware(
            ApiKeyMiddleware,
            keys=keys,
            admin_keys=settings.admin_keys(),
            key_ids=KeyIds(secret.get_secret_value() if secret else None, keys),
            public_probes=settings.health_public,
            failures_per_minute=settings.auth_failures_per_minute,
            push_exempt=settings.push_routes,
        )
    if settings.push_routes:
        app.add_middleware(
            PushGuardMiddleware,
            auth=PushAuth(settings),
            failures_per_minute=settings.auth_failures_per_minute,
        )
    app.add_middleware(InFlightMiddleware, tracker=runtime.in_flight)
    # Before the key check: a foreign page must not learn whether a key it holds works.
    app.add_middleware(WebSocketOriginMiddleware, allowed=settings.cors_origins)
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
    app.add_middleware(AccessMiddleware, route_of=route_resolver(app))
    app.add_middleware(RequestIdMiddleware)
    # Wraps everything above: the request's span is current in every middleware, so
    # the access line and every log line carry its trace id.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        excluded_urls=",".join(PROBE_PREFIXES),
        # A span per ASGI message would be one per upload chunk, and one per audio
        # frame of a live session (36,000 in an hour): the server span covers them.
        exclude_spans=["receive", "send"],
        # ?token= (the emulator's push token) and the like never reach a span.
        server_request_hook=redact_span,
    )
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and gunicorn: settings from the environment."""
    return create_app()
