"""structlog set-up: one JSON object per line in Cloud Logging's shape.

stdlib loggers (uvicorn, gunicorn, libraries) go through the same processors, so
every line the process writes is JSON. ``log_format=console`` gives people a
readable rendering instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor

from whisper_service.config import Settings

_SEVERITY = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}


def _cloud_logging_shape(_: Any, method: str, event: EventDict) -> EventDict:
    """Rename structlog's keys to the ones Cloud Logging reads."""
    level = str(event.pop("level", method))
    event["severity"] = _SEVERITY.get(level.lower(), level.upper())
    event["message"] = event.pop("event", "")
    return event


class TraceFields:
    """Add the current span as Cloud Logging's trace, spanId and trace_sampled fields, so
    Cloud Logging links every line of a request to its trace."""

    def __init__(self, project: str | None) -> None:
        self.prefix = f"projects/{project}/traces/" if project else ""

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event["logging.googleapis.com/trace"] = f"{self.prefix}{context.trace_id:032x}"
            event["logging.googleapis.com/spanId"] = f"{context.span_id:016x}"
            event["logging.googleapis.com/trace_sampled"] = context.trace_flags.sampled
        return event


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger (idempotent)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        structlog.processors.format_exc_info,
        TraceFields(settings.gcp_project),
    ]
    renderer: Processor
    if settings.log_format == "json":
        shared.append(_cloud_logging_shape)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        # Level first: a dropped line (DEBUG probe access lines in production) must not
        # pay for timestamps, trace fields and context merging.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    # faster-whisper logs two INFO/DEBUG lines per request about its own progress;
    # sse-starlette logs every chunk it sends at DEBUG, the transcript with it.
    for name in ("faster_whisper", "sse_starlette"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # The service writes its own access line (with Cloud Logging's httpRequest);
    # uvicorn's and gunicorn's would double it.
    for name in ("uvicorn.access", "gunicorn.access"):
        logging.getLogger(name).disabled = True
