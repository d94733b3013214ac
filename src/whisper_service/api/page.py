"""The live transcription page: ``GET /realtime`` and its three files, shipped in the
package (``whisper_service/web``), nothing from elsewhere.

The page holds no secret, so it is served without a key (``middleware/paths.is_page``);
the person using it types the key, and the page sends it as the WebSocket subprotocol
OpenAI's SDK uses, never in an address. A strict Content-Security-Policy lets the page
load only its own files and connect only to its own origin: with the page's origin
always allowed to open a session (``middleware/origin``), it works under any CORS
allow-list.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from whisper_service.api.deps import RuntimeDep
from whisper_service.errors import ServiceError

router = APIRouter(tags=["page"])

# name in the URL -> (file in whisper_service/web, content type)
FILES = {
    "": ("realtime.html", "text/html; charset=utf-8"),
    "realtime.js": ("realtime.js", "text/javascript; charset=utf-8"),
    "pcm16-worklet.js": ("pcm16-worklet.js", "text/javascript; charset=utf-8"),
    "realtime.css": ("realtime.css", "text/css; charset=utf-8"),
}
HEADERS = {
    # 'self' in connect-src covers ws:// and wss:// to the page's own host.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "microphone=(self)",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Revalidated on every load: a new release's page never runs an old script.
    "Cache-Control": "no-cache",
}


@cache
def _content(name: str) -> bytes:
    return (files("whisper_service") / "web" / name).read_bytes()


def _serve(runtime: RuntimeDep, name: str) -> Response:
    settings = runtime.settings
    found = FILES.get(name)
    if found is None or not settings.realtime_page or settings.realtime_max_sessions == 0:
        raise ServiceError("no such page", code="not_found", status=404)
    filename, media_type = found
    return Response(_content(filename), media_type=media_type, headers=HEADERS)


@router.get("/realtime", include_in_schema=False)
async def page(runtime: RuntimeDep) -> Response:
    """The live transcription page."""
    return _serve(runtime, "")


@router.get("/realtime/{name}", include_in_schema=False)
async def page_file(runtime: RuntimeDep, name: str) -> Response:
    """The page's script, audio worklet and style sheet."""
    return _serve(runtime, name)
