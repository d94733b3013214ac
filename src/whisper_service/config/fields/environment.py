"""Which environment's preset the process starts from."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field

from whisper_service.config.fields.shared import lowercase
from whisper_service.config.presets import AppEnv


class EnvironmentFields(BaseModel):
    """Which preset the rest starts from."""

    app_env: Annotated[AppEnv, BeforeValidator(lowercase)] = Field(
        AppEnv.PRODUCTION,
        validation_alias=AliasChoices("app_env", "APP_ENV"),
        description="Preset of defaults: production, staging or development.",
    )
