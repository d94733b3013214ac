"""Cloud Run manifests rendered from Settings, so the deployed configuration is a
product of the code's own presets.

``service.<env>.yaml`` is a Knative ``serving.knative.dev/v1`` Service for
``gcloud run services replace``; ``env.<env>.yaml`` is the same environment for
``gcloud run deploy --env-vars-file``. Placeholders filled by Cloud Build:
``__IMAGE__`` (the image just pushed) and ``__PROJECT_ID__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from whisper_service.config import AppEnv, Settings, env_var_name
from whisper_service.deploy.rules import cloud_run_timeout

IMAGE_PLACEHOLDER = "__IMAGE__"
PROJECT_PLACEHOLDER = "__PROJECT_ID__"
# Created by docs/deployment.md; one prefix per environment.
JOBS_BUCKET = f"{PROJECT_PLACEHOLDER}-whisper-jobs"
API_KEYS_SECRET = "whisper-api-keys"  # noqa: S105 - the Secret Manager name, not a secret
SERVICE_NAMES = {
    AppEnv.PRODUCTION: "whisper-service",
    AppEnv.STAGING: "whisper-service-staging",
    AppEnv.DEVELOPMENT: "whisper-service-dev",
}
# Not passed as environment: set by the platform (PORT), the image (model cache),
# the container shape (resources), or secrets.
_NOT_IN_ENV = {
    "port",
    "host",
    "model_cache_dir",
    "api_keys",
    "api_keys_file",
    "memory_limit_mib",
    "cpu_limit",
    "min_instances",
    "max_instances",
    "container_concurrency",
}
STARTUP_PROBE_PATH = "/health/startup"
LIVENESS_PROBE_PATH = "/health/live"


def environment(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in the container, with
    the job store moved to the project's jobs bucket when it is a local directory:
    Cloud Run instances share no disk, and /tmp dies with the instance."""
    env = settings.environment(exclude=_NOT_IN_ENV)
    if not (settings.jobs_store or "").startswith("gs://"):
        env[env_var_name("jobs_store")] = f"gs://{JOBS_BUCKET}/{settings.app_env.value}"
    return env


def service_manifest(settings: Settings, image: str = IMAGE_PLACEHOLDER) -> dict[str, Any]:
    """The Knative Service for Cloud Run."""
    name = SERVICE_NAMES[settings.app_env]
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in environment(settings).items()]
    if settings.auth_required:
        env.append(
            {
                "name": env_var_name("api_keys"),
                "valueFrom": {"secretKeyRef": {"name": API_KEYS_SECRET, "key": "latest"}},
            }
        )
    startup_budget = 240  # seconds for a cold start: image pull is outside it
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "labels": {"app": "whisper-service", "environment": settings.app_env.value},
            "annotations": {"run.googleapis.com/ingress": "internal-and-cloud-load-balancing"},
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"app": "whisper-service", "environment": settings.app_env.value},
                    "annotations": {
                        "autoscaling.knative.dev/minScale": str(settings.min_instances),
                        "autoscaling.knative.dev/maxScale": str(settings.max_instances),
                        # The health monitor and the drain run between requests.
                        "run.googleapis.com/cpu-throttling": "false",
                        "run.googleapis.com/startup-cpu-boost": "true",
                        "run.googleapis.com/execution-environment": "gen2",
                    },
                },
                "spec": {
                    "containerConcurrency": settings.container_concurrency,
                    "timeoutSeconds": cloud_run_timeout(settings),
                    "serviceAccountName": (f"{name}@{PROJECT_PLACEHOLDER}.iam.gserviceaccount.com"),
                    "containers": [
                        {
                            "name": "whisper-service",
                            "image": image,
                            "ports": [{"name": "http1", "containerPort": 8080}],
                            "env": env,
                            "resources": {
                                "limits": {
                                    "cpu": str(settings.cpu_limit),
                                    "memory": f"{settings.memory_limit_mib}Mi",
                                }
                            },
                            "startupProbe": {
                                "httpGet": {"path": STARTUP_PROBE_PATH, "port": 8080},
                                "periodSeconds": 2,
                                "timeoutSeconds": 2,
                                "failureThreshold": startup_budget // 2,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": LIVENESS_PROBE_PATH, "port": 8080},
                                "periodSeconds": 15,
                                "timeoutSeconds": 5,
                                "failureThreshold": 3,
                            },
                        }
                    ],
                },
            },
            "traffic": [{"percent": 100, "latestRevision": True}],
        },
    }


HEADER = "# Rendered by `whisper-service deploy render --env {env}`: do not edit by hand.\n"


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def render(settings: Settings, output_dir: Path, image: str = IMAGE_PLACEHOLDER) -> list[Path]:
    """Write service.<env>.yaml and env.<env>.yaml; return their paths."""
    env = settings.app_env.value
    output_dir.mkdir(parents=True, exist_ok=True)
    service = output_dir / f"service.{env}.yaml"
    env_file = output_dir / f"env.{env}.yaml"
    service.write_text(HEADER.format(env=env) + _yaml(service_manifest(settings, image)))
    env_file.write_text(HEADER.format(env=env) + _yaml(environment(settings)))
    return [service, env_file]
