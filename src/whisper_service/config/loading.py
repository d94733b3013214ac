"""Building Settings: from this process's environment, or from a preset alone."""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from whisper_service.config.fields.shared import ENV_PREFIX, env_var_name
from whisper_service.config.presets import AppEnv
from whisper_service.config.settings import Settings, SettingsError

SECRET_FIELDS = ("api_keys", "admin_api_keys", "key_id_secret")


def _describe(error: dict[str, Any]) -> str:
    if not error.get("loc"):  # a cross-field rule: its message names the variables
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    value = "<secret>" if field in SECRET_FIELDS else error.get("input")
    return f"{env_var_name(field)}={value!r}: {error['msg']}"


def preset_settings(env: AppEnv | str, **overrides: Any) -> Settings:
    """Settings of a preset alone, ignoring this process's environment: what a
    deployment of ``env`` runs with, whoever renders it."""
    ours = [
        k
        for k in os.environ
        if k.upper().startswith(ENV_PREFIX)
        or k.upper() in ("APP_ENV", "PORT", "GOOGLE_CLOUD_PROJECT")
    ]
    saved = {k: os.environ.pop(k) for k in ours}
    try:
        return load_settings(app_env=str(env), **overrides)
    finally:
        os.environ.update(saved)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, raising SettingsError with every problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
