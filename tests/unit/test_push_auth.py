"""Only the push subscription may deliver job work: OIDC tokens checked against
certificates (made here with a local key, served as Google serves its own), and the
emulator's shared token."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from whisper_service.config import load_settings
from whisper_service.jobs.push_auth import GoogleCerts, PushAuth, PushRefused

AUDIENCE = "https://whisper.example.run.app/internal/jobs/units"
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
        load_settings(pubsub_push_audience=AUDIENCE, pubsub_push_service_account=ACCOUNT)
    )

    def fetch(url: str) -> Mapping[str, str]:
        if fetches is not None:
            fetches.append(url)
        return CERTS

    auth.certs = GoogleCerts(auth.certs.url, fetch)
    return auth


def refusal(auth: PushAuth, authorization: str | None, query: str | None = None) -> int:
    with pytest.raises(PushRefused) as refused:
        auth.check(authorization, query)
    return refused.value.status


def test_the_push_subscriptions_token_is_accepted_and_certs_are_cached() -> None:
    fetches: list[str] = []
    auth = oidc_auth(fetches)
    auth.check(f"Bearer {token()}", None)
    auth.check(f"Bearer {token()}", None)
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


def test_the_emulators_shared_token() -> None:
    shared = {"pubsub_push_token": "s3cret-token"}
    auth = PushAuth(load_settings(**shared))
    auth.check(None, "s3cret-token")
    assert refusal(auth, None, None) == 401
    assert refusal(auth, None, "s3cret-tokem") == 403
    assert refusal(auth, f"Bearer {token()}", None) == 401  # OIDC is not what it wants
