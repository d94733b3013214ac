"""One JSON error shape for every failure, compatible with OpenAI's:
``{"error": {"message", "type", "param", "code", "request_id"}}``.

A ServiceError (``whisper_service.errors``) carries its own status, code and
parameter; FastAPI's validation errors become 400 ``invalid_parameter``; unknown
routes and methods keep their status. Stack traces and internal paths never reach a
response: unexpected exceptions are logged with the request id and answered 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from whisper_service.errors import ServiceError
from whisper_service.observability.context import request_id_var
from whisper_service.observability.telemetry import telemetry

log = structlog.get_logger(__name__)

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def error_type(status: int) -> str:
    """OpenAI-style error type for a status code."""
    if status in _TYPES:
        return _TYPES[status]
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {
        "error": {
            "message": message,
            "type": error_type(status),
            "param": param,
            "code": code,
            "request_id": request_id_var.get(),
        }
    }


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse carrying the error body (rejections are counted)."""
    telemetry.rejected(code)
    return JSONResponse(
        error_body(status, code, message, param), status, headers=dict(headers or {})
    )


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, param=exc.param, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = _validation_param(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        # A field the request's model does not define: refused as OpenAI refuses it.
        return error_response(
            400, "unknown_parameter", f"Unrecognized request argument supplied: {param}",
            param=param,
        )  # fmt: skip
    problems = "; ".join(
        f"{_validation_param(tuple(e.get('loc', ()))) or 'request'}: {e.get('msg')}"
        for e in exc.errors()
    )
    return error_response(400, "invalid_parameter", problems, param=param)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, error_class=type(exc).__name__)
    return error_response(500, "internal_error", "internal server error; see the service logs")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the JSON error shape."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def send_error(send: Send, error: ServiceError, scope: Scope | None = None) -> None:
    """Answer from middleware (before any route runs) in the API's JSON error shape,
    counted as a rejection (``send_error_response``)."""
    telemetry.rejected(error.code)
    await send_error_response(send, error, scope)


async def send_error_response(send: Send, error: ServiceError, scope: Scope | None = None) -> None:
    """``error`` in the API's JSON error shape. A WebSocket handshake is refused with
    that HTTP answer where the server can send one (the ASGI ``websocket.http.response``
    extension), else closed unaccepted (403)."""
    body = json.dumps(error_body(error.status, error.code, error.message, error.param)).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    status = error.status
    prefix = "http"
    if scope is not None and scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": error.code})
            return
        prefix = "websocket.http"
    await send({"type": f"{prefix}.response.start", "status": status, "headers": raw_headers})
    await send({"type": f"{prefix}.response.body", "body": body})
