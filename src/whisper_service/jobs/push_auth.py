"""Who may push deliveries: only the Pub/Sub push subscription of each route.

In production each subscription signs its pushes with an OIDC token of its service
account. The token must verify against Google's certificates and carry Google as
issuer, the configured account as a verified e-mail, and the audience of the route it
is presented to: ``WHISPER_PUBSUB_PUSH_AUDIENCE`` followed by the route's path
(``<audience>/internal/jobs/units``, ``<audience>/internal/jobs/dead-letters``), so a
token minted for one subscription is refused on the other route. With the audience
set to the service's URL, that is exactly the audience Pub/Sub uses by default.

For the emulator, which signs nothing, a shared token in the endpoint's query
(``?token=``) stands in; the settings allow it only where OIDC is not configured and
the preset is not production. Anything else gets 401 or 403 and nothing runs. Nothing
a caller sent (a token, google-auth's message about it) is ever logged.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from whisper_service.config import Settings
from whisper_service.errors import ServiceError

log = structlog.get_logger(__name__)

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CERTS_TTL_SECONDS = 3600.0


class PushRefused(ServiceError):
    """A request on a push endpoint that is not from the push subscription."""


def _refused(status: int, why: str, **context: str) -> PushRefused:
    # ``why`` is one of this module's fixed phrases: never a token, never an
    # exception's text (google-auth quotes a malformed token in its messages).
    log.warning("job_push_refused", reason=why, **context)
    message = "push endpoint: credentials missing" if status == 401 else "push endpoint: refused"
    return PushRefused(message, code="push_unauthorized", status=status)


class GoogleCerts:
    """Google's signing certificates, fetched at most once an hour."""

    def __init__(self, url: str, fetch: Callable[[str], Mapping[str, str]] | None = None) -> None:
        self.url = url
        self._fetch = fetch or _fetch_json
        self._certs: Mapping[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> Mapping[str, str]:
        with self._lock:
            if not self._certs or time.monotonic() - self._fetched > CERTS_TTL_SECONDS:
                self._certs = self._fetch(self.url)
                self._fetched = time.monotonic()
            return self._certs


def _fetch_json(url: str) -> Mapping[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a configured https URL
        certs: Mapping[str, str] = json.load(response)
    return certs


def route_audience(audience: str, path: str) -> str:
    """The audience a push to ``path`` must carry: the configured one, then the path
    (a trailing slash of the configured audience is not doubled)."""
    return audience.rstrip("/") + path


class PushAuth:
    """Checks the credentials of one push request (blocking: run in a thread)."""

    def __init__(self, settings: Settings) -> None:
        token = settings.pubsub_push_token
        self.token = token.get_secret_value() if token else None
        self.audience = settings.pubsub_push_audience or ""
        self.account = settings.pubsub_push_service_account
        self.certs = GoogleCerts(settings.pubsub_push_certs_url)

    def check(self, authorization: str | None, query_token: str | None, path: str) -> None:
        """Return if the request is the subscription of ``path``'s; raise PushRefused
        if not."""
        if self.token is not None:
            if query_token is None:
                raise _refused(401, "no token")
            if not hmac.compare_digest(query_token.encode(), self.token.encode()):
                raise _refused(403, "wrong token")
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise _refused(401, "no bearer token")
        claims = self._verified(authorization.removeprefix("Bearer ").strip(), path)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _refused(403, "issuer is not Google")
        if claims.get("email") != self.account or not claims.get("email_verified"):
            raise _refused(403, "not the push service account")

    def _verified(self, token: str, path: str) -> Mapping[str, Any]:
        from google.auth import exceptions, jwt

        try:
            certs = self.certs()
        except Exception as exc:
            log.error("job_push_certs_unavailable", url=self.certs.url, error=str(exc))
            raise ServiceError(
                "push endpoint: cannot verify tokens now", code="push_unverifiable", status=503
            ) from exc
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token, certs=certs, audience=route_audience(self.audience, path)
            )
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise _refused(403, "token does not verify", error_type=type(exc).__name__) from exc
        return claims
