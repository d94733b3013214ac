"""Errors a caller can cause or meet, each with a stable ``code`` for clients and the
HTTP ``status`` that says whose fault it is.

Every such failure derives from :class:`ServiceError`: audio that cannot be decoded
(``audio``), gs:// objects (``storage``), options a model cannot honour (``engines``),
work refused or stopped (``serving``), and the API's own checks. The API renders them
all in one place (``api/error_responses.py``); nothing on the way re-wraps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self


class ServiceError(Exception):
    """A failure to report to the caller. Subclasses set ``status`` and ``code``;
    one-off errors pass them as arguments."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Not super(): a subclass may also derive from an exception with another
        # constructor (api.middleware.body_limit.UploadTooLarge).
        Exception.__init__(self, message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def about(self, param: str) -> Self:
        """Name the request parameter at fault, unless the raiser already did (an
        audio error does not know whether its bytes came as ``file`` or ``gcs_uri``)."""
        if self.param is None:
            self.param = param
        return self


class InvalidParameter(ServiceError):
    """A request parameter is malformed or inconsistent with another."""

    status = 400
    code = "invalid_parameter"


class ContentTooLarge(ServiceError):
    """An upload over the size limit (413), in the words OpenAI's API uses, so clients
    written against it recognise it."""

    status = 413
    code = "file_too_large"

    def __init__(self, limit: int, size: int, how: str = "read") -> None:
        super().__init__(
            f"Maximum content size limit ({limit}) exceeded ({size} bytes {how})", param="file"
        )


# Why work was not run, or stopped before it finished: status and message per reason.
REFUSALS: dict[str, tuple[int, str]] = {
    "queue_full": (429, "the inference queue is full; retry later"),
    "queue_timeout": (503, "no inference worker became free in time; retry later"),
    "shutting_down": (
        503,
        "the instance is shutting down and could not finish this request in time; retry",
    ),
    "deadline_exceeded": (504, "the request deadline passed before inference finished"),
    "client_disconnected": (499, "the client disconnected"),
    "cancelled": (503, "the request was cancelled; retry later"),
}


class Refused(ServiceError):
    """Work that was not run, or was stopped; ``reason`` is a key of REFUSALS and the
    error's code. ``retry_after`` (seconds) becomes a Retry-After header on 429/503."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        status, message = REFUSALS.get(reason, (503, f"the work was stopped ({reason})"))
        headers = {}
        if retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, code=reason, status=status, headers=headers)
        self.reason = reason
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
