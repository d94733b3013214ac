"""GET /metrics: the Prometheus exposition, merged across gunicorn workers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from whisper_service.api.deps import ClientDep, InternalsDep, RuntimeDep
from whisper_service.api.schemas import error_responses
from whisper_service.errors import ServiceError
from whisper_service.observability.metrics import exposition

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403),
    },
)
async def scrape(runtime: RuntimeDep, internals: InternalsDep, client: ClientDep) -> Response:
    """Every metric of every live worker in the Prometheus text format. With
    WHISPER_METRICS_ACCESS=key only for an admin key; with =port not served here."""
    if runtime.settings.metrics_access == "key" and not internals:
        if client is None:
            raise ServiceError(
                "the metrics need an admin API key (Authorization: Bearer <key>)",
                code="missing_api_key",
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="whisper-service"'},
            )
        raise ServiceError(
            "the metrics need an admin API key, not a caller's",
            code="admin_key_required",
            status=403,
        )
    body, content_type = exposition()
    return Response(body, media_type=content_type)
