"""Who may push deliveries: only the Pub/Sub push subscription.

In production the subscription signs each push with an OIDC token of its service
account. The token must verify against Google's certificates and carry the
configured audience, Google as issuer, and the configured account as a verified
e-mail. For the emulator, which signs nothing, a shared token in the endpoint's
query (``?token=``) stands in. Anything else gets 401 or 403 and nothing runs.
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


def _refused(status: int, why: str) -> PushRefused:
    log.warning("job_push_refused", reason=why)  # the token itself is never logged
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


class PushAuth:
    """Checks the credentials of one push request (blocking: run in a thread)."""

    def __init__(self, settings: Settings) -> None:
        token = settings.pubsub_push_token
        self.token = token.get_secret_value() if token else None
        self.audience = settings.pubsub_push_audience
        self.account = settings.pubsub_push_service_account
        self.certs = GoogleCerts(settings.pubsub_push_certs_url)

    def check(self, authorization: str | None, query_token: str | None) -> None:
        """Return if the request is the subscription's; raise PushRefused if not."""
        if self.token is not None:
            if query_token is None:
                raise _refused(401, "no token")
            if not hmac.compare_digest(query_token.encode(), self.token.encode()):
                raise _refused(403, "wrong token")
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise _refused(401, "no bearer token")
        claims = self._verified(authorization.removeprefix("Bearer ").strip())
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _refused(403, "issuer is not Google")
        if claims.get("email") != self.account or not claims.get("email_verified"):
            raise _refused(403, "not the push service account")

    def _verified(self, token: str) -> Mapping[str, Any]:
        from google.auth import exceptions, jwt

        try:
            certs = self.certs()
        except Exception as exc:
            log.error("job_push_certs_unavailable", url=self.certs.url, error=str(exc))
            raise ServiceError(
                "push endpoint: cannot verify tokens now", code="push_unverifiable", status=503
            ) from exc
        try:
            claims: Mapping[str, Any] = jwt.decode(token, certs=certs, audience=self.audience)
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise _refused(403, f"token does not verify: {exc}") from exc
        return claims
