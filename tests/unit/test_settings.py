"""Settings: presets, precedence, bounds, and error messages an operator can act on."""

from __future__ import annotations

import pytest

from whisper_service.config import PRESETS, AppEnv, EngineName, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("WHISPER_") or key in ("APP_ENV", "PORT"):
            monkeypatch.delenv(key)


def test_production_is_the_default_preset() -> None:
    settings = load_settings()
    assert settings.app_env is AppEnv.PRODUCTION
    assert settings.memory_limit_mib == 2560  # DESIGN says 2 GiB; diarization took 0.5 more
    assert settings.max_instances == 10
    assert settings.engine is EngineName.FASTER_WHISPER
    assert settings.model == "tiny.en"


@pytest.mark.parametrize("env", list(AppEnv))
def test_each_preset_applies(monkeypatch: pytest.MonkeyPatch, env: AppEnv) -> None:
    monkeypatch.setenv("APP_ENV", env.value.upper())
    settings = load_settings()
    assert settings.app_env is env
    for key, value in PRESETS[env].items():
        assert getattr(settings, key) == value


def test_environment_overrides_the_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("WHISPER_MEMORY_LIMIT_MIB", "1536")
    monkeypatch.setenv("WHISPER_LOG_LEVEL", "warning")
    monkeypatch.setenv("PORT", "9000")
    settings = load_settings()
    assert settings.memory_limit_mib == 1536
    assert settings.log_level == "WARNING"
    assert settings.port == 9000
    assert settings.log_format == "console"  # still from the preset


def test_keyword_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_ENGINE", "openai-whisper")
    assert load_settings(engine="faster-whisper").engine is EngineName.FASTER_WHISPER


def test_error_names_the_variable_the_value_and_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_QUEUE_SIZE", "-1")
    monkeypatch.setenv("PORT", "70000")
    monkeypatch.setenv("WHISPER_ENGINE", "tensorrt")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "WHISPER_QUEUE_SIZE='-1'" in message
    assert "greater than or equal to 0" in message
    assert "PORT='70000'" in message
    assert "WHISPER_ENGINE='tensorrt'" in message
    assert "faster-whisper" in message


def test_unknown_app_env_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    with pytest.raises(SettingsError, match="APP_ENV='prod'"):
        load_settings()


@pytest.mark.parametrize(
    ("cpus", "workers", "override", "expected"),
    [(2, 1, 0, 2), (2, 2, 0, 1), (1, 4, 0, 1), (8, 2, 3, 3)],
)
def test_threads_per_worker(cpus: int, workers: int, override: int, expected: int) -> None:
    settings = load_settings(inference_workers=workers, cpu_threads=override)
    assert settings.threads_per_worker(cpus) == expected
