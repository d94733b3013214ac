"""Who may call, from where, how often."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from whisper_service.config.fields.shared import CommaList, SecretList


class SecurityFields(BaseModel):
    """API keys, CORS, rate limits and trusted proxies."""

    api_keys: SecretList = Field(
        default_factory=list,
        description="Accepted API keys, comma-separated (a secret: shown redacted).",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key per line (a mounted secret)."
    )
    auth_required: bool = Field(
        False,
        description="Require an API key on every route but the health endpoints; serve "
        "refuses to start without one.",
    )
    admin_api_keys: SecretList = Field(
        default_factory=list,
        description="Keys that are API keys and also see internals: other callers' "
        "in-flight requests and the job store in /health, /metrics when "
        "WHISPER_METRICS_ACCESS=key. Comma-separated; a secret.",
    )
    key_id_secret: SecretStr | None = Field(
        None,
        description="Secret of the HMAC that names a key in logs, rate limits and job "
        "ownership; unset = derived from the configured keys (ids change when they do).",
    )
    health_public: bool = Field(
        True,
        description="Health probes and the /health report answer without an API key "
        "(the report's internals need an admin key either way).",
    )
    metrics_access: Literal["open", "key", "port"] = Field(
        "open",
        description="Who may read the Prometheus metrics: open = anyone at /metrics; key "
        "= an admin key at /metrics; port = only on WHISPER_METRICS_PORT (for a sidecar "
        "in the same instance), not on the service's port.",
    )
    metrics_port: int = Field(
        9464, ge=1, le=65535, description="Port of /metrics when WHISPER_METRICS_ACCESS=port."
    )
    auth_failures_per_minute: float = Field(
        10.0,
        ge=0,
        le=100_000,
        description="Requests with a wrong API key (or wrong push credentials) one address "
        "may send per minute (bursts of as many); past it that address gets 429 whatever "
        "it sends. 0 = no limit.",
    )
    cors_origins: CommaList = Field(
        default_factory=list,
        description="Origins allowed by CORS, comma-separated; also the only other origins "
        "whose pages may open a WebSocket here (a page of the service's own origin always may).",
    )
    rate_limit_per_minute: float = Field(
        0.0, ge=0, le=1_000_000, description="Requests per minute per client; 0 = no limit."
    )
    rate_limit_burst: int = Field(
        10, ge=1, le=100_000, description="Requests a client may send at once."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Addresses or networks of the proxies whose X-Forwarded-For is "
        "believed; the client is the right-most address they did not add. Never *: a "
        "client could then name any address it likes.",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _no_wildcard(cls, value: str) -> str:
        if "*" in value:
            raise ValueError(
                "'*' would believe any X-Forwarded-For a client sends: list the proxies' "
                "addresses or networks (Cloud Run's front end: 169.254.0.0/16)"
            )
        for part in (p.strip() for p in value.split(",")):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError as exc:
                raise ValueError(f"{part!r} is not an address or network") from exc
        return value
