"""Only each route's push subscription may deliver job work: OIDC tokens checked
against certificates (made here with a local key, served as Google serves its own),
with an audience per route, and the emulator's shared token; nothing a caller sent is
logged."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from whisper_service.config import SettingsError, load_settings
from whisper_service.jobs import push_auth
from whisper_service.jobs.push_auth import GoogleCerts, PushAuth, PushRefused

SERVICE_URL = "https://whisper.example.run.app"
UNITS, DEAD_LETTERS = "/internal/jobs/units", "/internal/jobs/dead-letters"
AUDIENCE = SERVICE_URL + UNITS
SHARED_TOKEN = "s3cret-token-for-the-emulator-0123"  # noqa: S105 - a test's stand-in
ACCOUNT = "pubsub-push@my-project.iam.gserviceaccount.com"


def key_and_certs(kid: str) -> tuple[crypt.RSASigner, dict[str, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = crypt.RSASigner.from_string(pem, key_id=kid)
    return signer, {kid: cert.public_bytes(serialization.Encoding.PEM).decode()}


SIGNER, CERTS = key_and_certs("k1")
STRANGER, _ = key_and_certs("k1")  # same key id, another key: a forgery


def token(signer: crypt.RSASigner = SIGNER, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1234",
    } | changes
    return jwt.encode(signer, {k: v for k, v in claims.items() if v is not None}).decode()


def oidc_auth(fetches: list[str] | None = None) -> PushAuth:
    auth = PushAuth(
        load_settings(pubsub_push_audience=SERVICE_URL, pubsub_push_service_account=ACCOUNT)
    )

    def fetch(url: str) -> Mapping[str, str]:
        if fetches is not None:
            fetches.append(url)
        return CERTS

    auth.certs = GoogleCerts(auth.certs.url, fetch)
    return auth


def refusal(
    auth: PushAuth, authorization: str | None, query: str | None = None, path: str = UNITS
) -> int:
    with pytest.raises(PushRefused) as refused:
        auth.check(authorization, query, path)
    return refused.value.status


def test_the_push_subscriptions_token_is_accepted_and_certs_are_cached() -> None:
    fetches: list[str] = []
    auth = oidc_auth(fetches)
    auth.check(f"Bearer {token()}", None, UNITS)
    auth.check(f"Bearer {token()}", None, UNITS)
    assert fetches == ["https://www.googleapis.com/oauth2/v1/certs"]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"aud": "https://someone-else.run.app/"}, 403),
        ({"iss": "https://evil.example.com"}, 403),
        ({"email": "someone@my-project.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
        ({"email": None}, 403),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, 403),
    ],
)
def test_a_token_with_the_wrong_claims_is_refused(changes: dict[str, Any], status: int) -> None:
    assert refusal(oidc_auth(), f"Bearer {token(**changes)}") == status


def test_forged_and_missing_tokens_are_refused() -> None:
    auth = oidc_auth()
    assert refusal(auth, f"Bearer {token(STRANGER)}") == 403
    assert refusal(auth, "Bearer not.a.jwt") == 403
    assert refusal(auth, None) == 401
    assert refusal(auth, f"Basic {token()}") == 401
    # A shared token means nothing to an OIDC-configured endpoint.
    assert refusal(auth, None, "anything") == 401


def test_each_routes_token_works_on_that_route_only() -> None:
    auth = oidc_auth()
    dead_letters = token(aud=SERVICE_URL + DEAD_LETTERS)
    auth.check(f"Bearer {dead_letters}", None, DEAD_LETTERS)
    assert refusal(auth, f"Bearer {dead_letters}", path=UNITS) == 403
    assert refusal(auth, f"Bearer {token()}", path=DEAD_LETTERS) == 403
    # The bare audience (one token for both routes, as before) is refused on both.
    for path in (UNITS, DEAD_LETTERS):
        assert refusal(auth, f"Bearer {token(aud=SERVICE_URL)}", path=path) == 403


def test_no_log_line_holds_what_the_caller_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module's own logger, whatever structlog's configuration cached for it.
    capture = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(structlog.PrintLogger(), processors=[capture])
    monkeypatch.setattr(push_auth, "log", logger)
    auth = oidc_auth()
    # google-auth quotes a malformed token's segments in its error messages.
    secret = "eyJzZWNyZXQiOiAidGhlLWNhbGxlcnMtb3duIn0"  # noqa: S105 - what a caller sent
    presented = [f"{secret}.{secret}", f"{secret}.{secret}.{secret}", secret]
    for value in presented:
        assert refusal(auth, f"Bearer {value}") in (401, 403)
    shared = PushAuth(load_settings(app_env="development", pubsub_push_token=SHARED_TOKEN))
    assert refusal(shared, None, secret) == 403
    logs = capture.entries
    assert len(logs) == len(presented) + 1
    assert all(e["event"] == "job_push_refused" for e in logs)
    assert secret not in repr(logs)
    assert {e["reason"] for e in logs} <= {"token does not verify", "wrong token"}


def test_the_emulators_shared_token() -> None:
    auth = PushAuth(load_settings(app_env="development", pubsub_push_token=SHARED_TOKEN))
    auth.check(None, SHARED_TOKEN, UNITS)
    auth.check(None, SHARED_TOKEN, DEAD_LETTERS)
    assert refusal(auth, None, None) == 401
    assert refusal(auth, None, SHARED_TOKEN[:-1] + "4") == 403
    assert refusal(auth, f"Bearer {token()}", None) == 401  # OIDC is not what it wants


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"app_env": "development", "pubsub_push_token": "short"}, "at least 32 characters"),
        ({"app_env": "production", "pubsub_push_token": SHARED_TOKEN}, "refused in production"),
        (
            {"app_env": "staging", "pubsub_push_token": SHARED_TOKEN,
             "pubsub_push_audience": SERVICE_URL},
            "would replace OIDC",
        ),
        (
            {"app_env": "staging", "pubsub_push_token": SHARED_TOKEN,
             "pubsub_push_service_account": ACCOUNT},
            "would replace OIDC",
        ),
    ],
)  # fmt: skip
def test_the_shared_token_only_where_oidc_cannot_be(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings(**settings)
