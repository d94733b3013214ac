"""Rules a configuration must follow to be deployed, beyond single-field bounds.

``Settings`` itself rejects what cannot even run (a value out of bounds, a drain that
outlasts the platform's grace). These rules judge a valid configuration against the
platform and the hardware it will get; ``whisper-service config validate`` lists
every broken one.
"""

from __future__ import annotations

import math

from whisper_service.audio import decoded_bytes
from whisper_service.config import Settings, env_var_name
from whisper_service.deploy.model_memory import audio_budget_mib, settings_need_mib

# Cloud Run: SIGKILL 10 s after SIGTERM; at most 60 minutes per request.
CLOUD_RUN_GRACE_SECONDS = 10.0
CLOUD_RUN_MAX_TIMEOUT_SECONDS = 3600
MEMORY_HEADROOM = 0.8


def cloud_run_timeout(settings: Settings) -> int:
    """Cloud Run's request timeout: the service's own deadline, in whole seconds."""
    return math.ceil(settings.request_timeout_seconds)


def problems(settings: Settings) -> list[str]:
    """Every rule ``settings`` breaks, each naming the variables involved."""
    found: list[str] = []
    name = env_var_name
    if settings.platform_grace_seconds > CLOUD_RUN_GRACE_SECONDS:
        found.append(
            f"{name('platform_grace_seconds')}={settings.platform_grace_seconds:g}: Cloud Run "
            f"kills {CLOUD_RUN_GRACE_SECONDS:g} s after SIGTERM whatever this says"
        )
    if cloud_run_timeout(settings) > CLOUD_RUN_MAX_TIMEOUT_SECONDS:
        found.append(
            f"{name('request_timeout_seconds')}={settings.request_timeout_seconds:g} exceeds "
            f"Cloud Run's {CLOUD_RUN_MAX_TIMEOUT_SECONDS} s request limit"
        )
    if settings.min_instances > settings.max_instances:
        found.append(
            f"{name('min_instances')}={settings.min_instances} exceeds "
            f"{name('max_instances')}={settings.max_instances}"
        )
    running = settings.inference_workers * settings.batch_size
    capacity = settings.web_workers * (running + settings.queue_size)
    if settings.container_concurrency > capacity:
        found.append(
            f"{name('container_concurrency')}={settings.container_concurrency} exceeds what an "
            f"instance admits ({settings.web_workers} web x ({running} running + "
            f"{settings.queue_size} queued) = {capacity}): Cloud Run would send "
            "requests that get 429 instead of starting an instance"
        )
    threads = settings.threads_per_worker(settings.cpu_limit) * settings.inference_workers
    if threads * settings.web_workers > settings.cpu_limit:
        found.append(
            f"{settings.web_workers * threads} inference threads on {name('cpu_limit')}="
            f"{settings.cpu_limit} CPUs oversubscribe the CPU (check "
            f"{name('cpu_threads')}, {name('inference_workers')}, {name('web_workers')})"
        )
    need = settings_need_mib(settings)
    budget = MEMORY_HEADROOM * settings.memory_limit_mib
    if need is not None and need > budget:
        found.append(
            f"{name('model')}={settings.model} on {settings.engine.value} needs about {need} MiB "
            f"({settings.web_workers} web x {settings.inference_workers} inference workers), "
            f"more than {MEMORY_HEADROOM:.0%} of {name('memory_limit_mib')}="
            f"{settings.memory_limit_mib}"
        )
    audio_budget = audio_budget_mib(settings)
    for field in ("max_audio_seconds", "jobs_max_audio_seconds"):
        seconds = getattr(settings, field)
        audio_mib = decoded_bytes(seconds) / 2**20
        if audio_budget is not None and audio_mib > audio_budget:
            found.append(
                f"{name(field)}={seconds:g} decodes to {audio_mib:.0f} MiB, more than the "
                f"{audio_budget} MiB of audio an instance may hold ({name('audio_memory_mib')}, or "
                f"what {name('memory_limit_mib')}={settings.memory_limit_mib} leaves after "
                f"the model and {settings.inference_workers} running inferences)"
            )
    return found
