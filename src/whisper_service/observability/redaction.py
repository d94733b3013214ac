"""Secrets that ride in URLs (``?token=``, ``?key=``) kept out of logs and spans.

The access log and the server spans both carry the request's URL; each passes it
through ``redacted_query`` first, so a value of a secret-looking query parameter is
never written anywhere.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import Scope

_SENSITIVE_QUERY = re.compile(
    r"(?i)^(key|api_key|apikey|token|access_token|sig|signature|password|secret)$"
)
REDACTED = "REDACTED"
# Span attributes that hold the query (stable and older HTTP semantic conventions).
_URL_ATTRIBUTES = ("url.query", "url.full", "http.target", "http.url")


def redacted_query(query: str) -> str:
    """``query`` with the values of secret-looking parameters replaced."""
    parts = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and _SENSITIVE_QUERY.match(name) else pair)
    return "&".join(parts)


def redacted_url(scope: Scope) -> str:
    """Path and query of a request, secrets redacted."""
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return str(scope["path"])
    return f"{scope['path']}?{redacted_query(query)}"


def redact_span(span: Any, scope: Scope) -> None:
    """A server span's URL attributes with secrets redacted (the FastAPI
    instrumentation's ``server_request_hook``, called right after the span starts)."""
    query = scope.get("query_string", b"").decode("latin-1")
    if not query or not span.is_recording():
        return
    safe = redacted_query(query)
    if safe == query:
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and query in value:
            span.set_attribute(name, value.replace(query, safe))
