"""Configuration: one ``Settings`` model, its presets, and the generated reference.

- ``fields``: the settings, in groups, each bounded and described;
- ``presets``: what ``APP_ENV`` starts from;
- ``settings``: ``Settings`` itself (sources, cross-field rules, derived values);
- ``loading``: building it from the environment, or from a preset alone;
- ``docs``: the tables of docs/configuration.md, generated from the fields.
"""

from whisper_service.config.fields import EngineName
from whisper_service.config.fields.shared import env_var_name
from whisper_service.config.loading import load_settings, preset_settings
from whisper_service.config.presets import PRESETS, AppEnv
from whisper_service.config.settings import SHUTDOWN_MARGIN_SECONDS, Settings, SettingsError

__all__ = [
    "PRESETS",
    "SHUTDOWN_MARGIN_SECONDS",
    "AppEnv",
    "EngineName",
    "Settings",
    "SettingsError",
    "env_var_name",
    "load_settings",
    "preset_settings",
]
