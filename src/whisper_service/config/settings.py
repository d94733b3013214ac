"""The service's whole configuration: one pydantic-settings model.

Precedence, highest first: explicit keyword arguments, environment variables, the
preset chosen by ``APP_ENV``, the field defaults. Every field is bounded; an invalid
value fails at startup with :class:`SettingsError`, whose message names the
environment variable, the value given and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from whisper_service.config.fields import (
    EngineName,
    EnvironmentFields,
    HealthFields,
    JobsFields,
    LifecycleFields,
    LimitsFields,
    LoggingFields,
    ModelFields,
    PlatformFields,
    RealtimeFields,
    SecurityFields,
    ServingFields,
    StorageFields,
)
from whisper_service.config.fields.shared import ENV_PREFIX, env_var_name
from whisper_service.config.presets import AppEnv, PresetSource

# Shorter keys can be guessed; `openssl rand -hex 24` makes a good one.
MIN_API_KEY_LENGTH = 16
# Time between the end of the drain and the platform's SIGKILL: cancelled requests
# are answered and the process exits in it.
SHUTDOWN_MARGIN_SECONDS = 1.5


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message lists every problem."""


# pydantic orders the fields of several bases from the last base to the first: the
# groups are listed bottom-up so that settings read top-down (serving first).
class Settings(
    PlatformFields,
    LoggingFields,
    RealtimeFields,
    JobsFields,
    StorageFields,
    SecurityFields,
    HealthFields,
    LifecycleFields,
    LimitsFields,
    ModelFields,
    ServingFields,
    EnvironmentFields,
    BaseSettings,
):
    """Configuration of one service instance. Environment variables use the prefix
    ``WHISPER_`` (``WHISPER_ENGINE``), except ``APP_ENV`` and ``PORT``, which follow the
    platform's conventions."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """The rules that span groups (each group checks its own)."""
        problems = []
        if self.drain_timeout_seconds + SHUTDOWN_MARGIN_SECONDS > self.platform_grace_seconds:
            problems.append(
                f"{env_var_name('drain_timeout_seconds')}={self.drain_timeout_seconds:g} "
                f"leaves less than {SHUTDOWN_MARGIN_SECONDS:g} s before the platform's SIGKILL "
                f"({env_var_name('platform_grace_seconds')}={self.platform_grace_seconds:g})"
            )
        if self.pubsub_push_token and self.app_env is AppEnv.PRODUCTION:
            problems.append(
                f"{env_var_name('pubsub_push_token')} is for the Pub/Sub emulator and is "
                "refused in production: pushes there carry OIDC tokens "
                f"({env_var_name('pubsub_push_audience')}, "
                f"{env_var_name('pubsub_push_service_account')})"
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @property
    def push_routes(self) -> bool:
        """Whether Pub/Sub pushes job deliveries to this instance's internal routes."""
        return self.jobs_queue == "pubsub" and bool(self.jobs_store)

    def check_servable(self) -> None:
        """Rules that only matter to a process about to serve traffic (secrets are
        deployed separately from configuration, so `config show` or `models prepare`
        must work without them). Raises SettingsError."""
        try:
            keys = self.all_api_keys()
        except ValueError as exc:
            raise SettingsError(f"invalid configuration:\n  {exc}") from None
        if self.metrics_access == "key" and not self.admin_api_keys:
            raise SettingsError(
                f"invalid configuration:\n  {env_var_name('metrics_access')}=key but no "
                f"admin key is configured: set {env_var_name('admin_api_keys')}"
            )
        short = [len(k) for k in keys if len(k) < MIN_API_KEY_LENGTH]
        if short:
            raise SettingsError(
                f"invalid configuration:\n  {len(short)} API key(s) shorter than "
                f"{MIN_API_KEY_LENGTH} characters (lengths {', '.join(map(str, short))}) in "
                f"{env_var_name('api_keys')}, {env_var_name('api_keys_file')} or "
                f"{env_var_name('admin_api_keys')}: generate them, e.g. `openssl rand -hex 24`"
            )
        if self.auth_required and not keys:
            raise SettingsError(
                f"invalid configuration:\n  {env_var_name('auth_required')}=true but no API "
                f"key is configured: set {env_var_name('api_keys')} or "
                f"{env_var_name('api_keys_file')}"
            )

    def admin_keys(self) -> list[str]:
        """Keys from WHISPER_ADMIN_API_KEYS."""
        return [k.get_secret_value() for k in self.admin_api_keys]

    def all_api_keys(self) -> list[str]:
        """Every key that authenticates: WHISPER_API_KEYS, the key file (blank lines and
        # comments ignored) and the admin keys. An unreadable key file is a
        configuration error."""
        keys = [k.get_secret_value() for k in self.api_keys] + self.admin_keys()
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as exc:
                raise ValueError(
                    f"{env_var_name('api_keys_file')}: cannot read {self.api_keys_file}: "
                    f"{exc.strerror}"
                ) from None
            keys += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        return keys

    def environment(self, exclude: Collection[str] = ()) -> dict[str, str]:
        """The environment variables that reproduce these settings: unset and empty
        values left out, lists comma-separated, booleans lower-case, secrets redacted."""
        env = {}
        for field, value in self.model_dump(mode="json").items():
            if field in exclude or value is None or value == []:
                continue
            if isinstance(value, list):
                text = ",".join(map(str, value))
            elif isinstance(value, bool):
                text = str(value).lower()
            else:
                text = str(value)
            env[env_var_name(field)] = text
        return env

    @property
    def gunicorn_timeout_seconds(self) -> int:
        """gunicorn's worker timeout: the request deadline plus a margin. Inference runs
        off the event loop, so a worker silent for this long is truly stuck."""
        return int(self.request_timeout_seconds) + 30

    @property
    def graceful_timeout_seconds(self) -> int:
        """How long gunicorn lets a worker finish after SIGTERM, in whole seconds: the
        platform's own grace. The drain ends well before (validation keeps drain + margin
        inside the grace); gunicorn killing earlier than the platform would only cut off
        the answers of what the drain cancelled on a busy machine."""
        return max(
            math.ceil(self.drain_timeout_seconds + SHUTDOWN_MARGIN_SECONDS),
            int(self.platform_grace_seconds),
        )

    @property
    def realtime_max_message_bytes(self) -> int:
        """The largest live-session message the service reads: a maximal frame as
        base64 in an append event, and the event around it."""
        return self.realtime_max_frame_bytes * 4 // 3 + 4096

    @property
    def long_audio_from(self) -> float | None:
        """Seconds from which a recording is decoded in regions at once (None: never)."""
        return self.long_audio_seconds or None

    @property
    def batch_size(self) -> int:
        """Requests each inference worker runs at once, their model calls batched:
        ``batch_max_size`` with faster-whisper; openai-whisper cannot batch."""
        return self.batch_max_size if self.engine is EngineName.FASTER_WHISPER else 1

    def threads_per_worker(self, cpus: int) -> int:
        """Intra-op threads for each inference worker given ``cpus`` usable CPUs."""
        if self.cpu_threads:
            return self.cpu_threads
        return max(1, cpus // self.inference_workers)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, PresetSource(settings_cls))
