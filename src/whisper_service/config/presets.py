"""Presets: the figures each deployment environment starts from.

``APP_ENV`` picks one; environment variables and explicit arguments override it
(``PresetSource`` sits below them in the settings' sources).
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource


class AppEnv(StrEnum):
    """Deployment environment; picks a preset of defaults."""

    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


# Figures per environment (DESIGN.md section 4). Only what differs from the field
# defaults is listed; docs/configuration.md explains each choice.
PRESETS: dict[AppEnv, dict[str, Any]] = {
    AppEnv.PRODUCTION: {
        "log_level": "INFO",
        "log_format": "json",
        # 2 GiB held the model, two running inferences and a 2-hour job's 440 MiB of
        # audio; speaker diarization's 270 MiB (torch for its encoder, scikit-learn)
        # needs the rest.
        "memory_limit_mib": 2560,
        "cpu_limit": 2,
        "min_instances": 1,
        "max_instances": 10,
        # Concurrency = inference workers + queue: Cloud Run must not route more
        # requests to an instance than its admission control accepts (the plan's 80
        # would turn 72 of them into 429s instead of scaling out).
        "container_concurrency": 8,
        # One two-threaded inference worker whose decoder calls batch up to 8 requests:
        # at 8 clients 1.26-1.41x the requests/s of two single-threaded workers
        # unbatched for +128-147 MiB, and a lone request gets both threads
        # (docs/benchmarks.md).
        "inference_workers": 1,
        "batch_max_size": 8,
        "queue_size": 6,
        "request_timeout_seconds": 300.0,
        "auth_required": True,
        "rate_limit_per_minute": 120.0,
        # Cloud Run's front end connects from a link-local address and appends the
        # client's address to X-Forwarded-For; what a client wrote there is not believed.
        "forwarded_allow_ips": "169.254.0.0/16",
        # Scraped by the Managed Service for Prometheus sidecar inside the instance;
        # nothing outside it sees the metrics (docs/observability.md).
        "metrics_access": "port",
    },
    AppEnv.STAGING: {
        "log_level": "DEBUG",
        "log_format": "json",
        # Staging must hold what production accepts (a 2-hour job's 440 MiB of audio);
        # 1 GiB left 156 MiB of audio after the model. One inference worker, not two,
        # so 2 GiB is enough with diarization.
        "memory_limit_mib": 2048,
        "cpu_limit": 1,
        "min_instances": 0,
        "max_instances": 5,
        "container_concurrency": 4,
        "queue_size": 3,
        "request_timeout_seconds": 300.0,
        "rate_limit_per_minute": 120.0,
        "forwarded_allow_ips": "169.254.0.0/16",
        "metrics_access": "port",
    },
    AppEnv.DEVELOPMENT: {
        # int8 fits 512 MiB (float32 would not, under the 80 % rule); a laptop favours
        # speed over the one word int8 loses on the LJSpeech set.
        "compute_type": "int8",
        "log_level": "DEBUG",
        "log_format": "console",
        # 512 MiB held the int8 model and nothing else: one running inference adds up
        # to 200 MiB, 30 minutes of audio 110 MiB, diarization 270 MiB
        # (docs/configuration.md).
        "memory_limit_mib": 1536,
        "cpu_limit": 1,
        "min_instances": 0,
        "max_instances": 2,
        "container_concurrency": 4,
        "queue_size": 3,
        "request_timeout_seconds": 300.0,
        # One machine: a local directory survives restarts, which is all it needs; /tmp
        # is what a read-only container can write. The store refuses a directory that
        # another user owns or can write.
        "jobs_store": "/tmp/whisper-service/jobs",  # noqa: S108
        "jobs_max_audio_seconds": 3600.0,
        # A batched pass holds 90 MiB per window: two leave room for an hour of audio.
        "jobs_batch_size": 2,
    },
}


class PresetSource(PydanticBaseSettingsSource):
    """Supplies the APP_ENV preset below explicit arguments and environment variables."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole preset

    def __call__(self) -> dict[str, Any]:
        chosen = self.current_state.get("app_env") or os.environ.get("APP_ENV") or "production"
        try:
            env = AppEnv(str(chosen).lower())
        except ValueError:
            return {}  # the app_env field's own validation reports the bad value
        return dict(PRESETS[env])
