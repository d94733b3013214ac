"""What several groups of settings use: the engine names, lists read as
``"a,b,c"``, case folding, the gs:// pattern, and the environment variable that sets
a field (``env_var_name``: the groups' messages name it, as ``Settings``' do)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr
from pydantic_settings import NoDecode

ENV_PREFIX = "WHISPER_"


def env_var_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    if field_name in ("app_env", "port"):
        return field_name.upper()
    return f"{ENV_PREFIX}{field_name.upper()}"


class EngineName(StrEnum):
    """Inference backends."""

    FASTER_WHISPER = "faster-whisper"
    OPENAI_WHISPER = "openai-whisper"


def split_commas(value: Any) -> Any:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; anything else as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def lowercase(value: Any) -> Any:
    """Strings lower-cased (enum values are lower-case; environments are not)."""
    return value.lower() if isinstance(value, str) else value


def uppercase(value: Any) -> Any:
    """Strings upper-cased (log levels)."""
    return value.upper() if isinstance(value, str) else value


# Lists come from the environment as "a,b,c" (NoDecode: not as JSON).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_commas)]
LowerEngine = Annotated[EngineName, BeforeValidator(lowercase)]
GCS_PREFIX_PATTERN = r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?"
