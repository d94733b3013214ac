"""The OpenAPI document, true to what the service answers.

FastAPI documents each route from its signature and ``responses``; what it cannot
see is added here:

- a malformed parameter is answered 400 ``invalid_parameter`` in the error shape,
  not FastAPI's default 422 ``HTTPValidationError``;
- the middleware refuses requests before any route runs: 401 (API key), 429 (rate
  limit) and 503 (draining) on every route but the probes, which only need a key
  when health endpoints are not public;
- the events of a ``text/event-stream`` answer (``event_stream``): each an SSE
  message whose JSON ``data`` is one of their models, which FastAPI would not
  otherwise put in the document;
- an optional file of a form is a file part, not ``anyOf [file, null]``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from whisper_service.api.middleware.paths import is_probe

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
_MIDDLEWARE_REFUSALS = {
    "401": "missing or invalid API key",
    "429": "rate limited",
    "503": "the instance is draining, or short of memory",
}


_REF_TEMPLATE = "#/components/schemas/{model}"
# Models that only appear inside an event stream's documentation.
_event_models: list[type[BaseModel]] = []


def event_stream(*events: type[BaseModel]) -> dict[str, Any]:
    """The ``text/event-stream`` content of a streaming answer. Before OpenAPI 3.2 its
    ``schema`` describes one event (as 3.2's ``itemSchema`` does): an SSE message
    whose ``data`` is JSON, one of ``events``."""
    _event_models.extend(e for e in events if e not in _event_models)
    refs = [{"$ref": _REF_TEMPLATE.format(model=e.__name__)} for e in events]
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "description": "message (the default)"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": refs},
            },
        },
    }
    return {"text/event-stream": {"schema": event}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == _VALIDATION_REF)


def _form_files_plain(spec: dict[str, Any]) -> None:
    """An optional file of a multipart form as the file part it is: FastAPI writes
    ``UploadFile | None`` as ``anyOf [file, null]``, but a form cannot send null (an
    absent part is how a form leaves it out), and clients tell a file part from a text
    field by the property's own schema."""
    schemas = spec.get("components", {}).get("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("multipart/form-data", {}).get("schema", {}).get("$ref", "")
            form = schemas.get(ref.rsplit("/", 1)[-1], {})
            for name, prop in form.get("properties", {}).items():
                files = [
                    option
                    for option in prop.get("anyOf", [])
                    if option.get("contentMediaType") == "application/octet-stream"
                ]
                if files and len(prop["anyOf"]) == 2 and {"type": "null"} in prop["anyOf"]:
                    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
                    form["properties"][name] = files[0] | rest


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the service's real error answers."""
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation["responses"]
            if _is_fastapi_validation(responses.get("422", {})):
                del responses["422"]
                responses.setdefault("400", _error("invalid parameter"))
            refusals = ["401"] if is_probe(path) else list(_MIDDLEWARE_REFUSALS)
            for status in refusals:
                responses.setdefault(status, _error(_MIDDLEWARE_REFUSALS[status]))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _, definitions = models_json_schema(
        [(model, "serialization") for model in _event_models], ref_template=_REF_TEMPLATE
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _form_files_plain(spec)
    return spec


def install(app: FastAPI) -> None:
    """Serve ``document(app)`` at /openapi.json (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(document(app))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]
