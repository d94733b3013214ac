"""GET /metrics: the Prometheus exposition, merged across gunicorn workers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

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
        }
    },
)
async def scrape() -> Response:
    """Every metric of every live worker in the Prometheus text format."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
