"""ASGI middleware: what every request passes before a route runs. All plain ASGI (not
BaseHTTPMiddleware), so a refusal costs no body bytes and uploads stream. ``paths``
says which paths are probes and push endpoints, for all of them."""
