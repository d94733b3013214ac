"""GET /metrics: the Prometheus exposition, merged across gunicorn workers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from whisper_service.observability.metrics import exposition

router = APIRouter(tags=["observability"])


@router.get("/metrics", summary="Prometheus metrics")
async def scrape() -> Response:
    """Every metric of every live worker in the Prometheus text format."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
