"""The OpenAPI document describes every answer the service gives."""

from __future__ import annotations

from typing import Any

import pytest

from whisper_service.app import create_app
from whisper_service.config import load_settings

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(load_settings(app_env="development", log_level="WARNING", jobs_store=None))
    return app.openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def resolves(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
    names = [r.rsplit("/", 1)[1] for r in refs if r]
    return all(n in spec["components"]["schemas"] for n in names)


def test_every_route_documents_its_success_schema(spec: dict[str, Any]) -> None:
    assert len(operations(spec)) >= 15
    for method, path, op in operations(spec):
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, f"{method} {path} documents no success"
        for code, response in ok.items():
            content = response.get("content")
            assert content, f"{method} {path} {code} has no content"
            for media, body in content.items():
                schema = body.get("schema")
                assert schema, f"{method} {path} {code} {media} has no schema"
                assert resolves(spec, schema), f"{method} {path} {code}: dangling $ref"


def test_every_route_documents_its_errors_in_the_error_shape(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert any(
            r["content"]["application/json"]["schema"].get("$ref") == ERROR_REF
            for r in errors.values()
        ), f"{method} {path} documents no error in the error shape"
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema.get("$ref"), f"{method} {path} {code} has an inline error schema"
            assert resolves(spec, schema), f"{method} {path} {code}: dangling $ref"


def test_validation_errors_are_documented_as_the_400_the_service_sends(
    spec: dict[str, Any],
) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    transcribe = spec["paths"]["/transcribe"]["post"]["responses"]
    assert transcribe["400"]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF
    # the form's fields, declared once, appear with their bounds
    body = spec["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    form_ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = spec["components"]["schemas"][form_ref]["properties"]
    assert {"file", "gcs_uri", "language", "beam_size", "vad_filter"} <= set(fields)
    jobs_ref = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    jobs_fields = spec["components"]["schemas"][jobs_ref["schema"]["$ref"].rsplit("/", 1)[1]]
    # a job is fetched when done: it does not stream
    assert set(jobs_fields["properties"]) == set(fields) - {"stream"}
