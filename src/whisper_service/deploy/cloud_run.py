"""Cloud Run manifests rendered from Settings, so the deployed configuration is a
product of the code's own presets.

``service.<env>.yaml`` is a Knative ``serving.knative.dev/v1`` Service for
``gcloud run services replace``; ``env.<env>.yaml`` is the same environment for
``gcloud run deploy --env-vars-file``; ``batch.<env>.yaml`` the Cloud Run Job of
``whisper-service batch`` for ``gcloud run jobs replace``. Placeholders filled by Cloud
Build: ``__IMAGE__`` (the image just pushed) and ``__PROJECT_ID__``; the batch job's
``__BATCH_INPUT__`` and ``__BATCH_OUTPUT__`` are given when it is executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from whisper_service.config import AppEnv, Settings, env_var_name
from whisper_service.deploy.jobs_platform import jobs_platform, setup_script
from whisper_service.deploy.rules import cloud_run_timeout

IMAGE_PLACEHOLDER = "__IMAGE__"
PROJECT_PLACEHOLDER = "__PROJECT_ID__"
# Secret Manager names (not secrets), created by docs/deployment.md.
SECRETS = {
    "api_keys": "whisper-api-keys",
    "admin_api_keys": "whisper-admin-api-keys",
    "key_id_secret": "whisper-key-id-secret",
}
RUNGMP_SECRET = "whisper-rungmp-config"  # noqa: S105 - a name
# Google's Managed Service for Prometheus sidecar for Cloud Run.
COLLECTOR_IMAGE = (
    "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
)
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
    "admin_api_keys",
    "key_id_secret",
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
    jobs moved onto the platform's engines (``jobs_platform``): Cloud Run instances
    share no disk, and /tmp dies with the instance."""
    env = settings.environment(exclude=_NOT_IN_ENV)
    if settings.jobs_store != "firestore" or settings.jobs_queue != "pubsub":
        env.update(jobs_platform(settings.app_env, SERVICE_NAMES[settings.app_env]))
    return env


def service_manifest(settings: Settings, image: str = IMAGE_PLACEHOLDER) -> dict[str, Any]:
    """The Knative Service for Cloud Run."""
    name = SERVICE_NAMES[settings.app_env]
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in environment(settings).items()]
    if settings.auth_required:
        for field, secret in SECRETS.items():
            env.append(
                {
                    "name": env_var_name(field),
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "latest"}},
                }
            )
    startup_budget = 240  # seconds for a cold start: image pull is outside it
    annotations = {
        "autoscaling.knative.dev/minScale": str(settings.min_instances),
        "autoscaling.knative.dev/maxScale": str(settings.max_instances),
        # The health monitor and the drain run between requests.
        "run.googleapis.com/cpu-throttling": "false",
        "run.googleapis.com/startup-cpu-boost": "true",
        "run.googleapis.com/execution-environment": "gen2",
    }
    extra: dict[str, Any] = {}
    containers: list[dict[str, Any]] = []
    if settings.metrics_access == "port":
        # The sidecar scrapes the metrics port inside the instance; the service's own
        # port, the only one Cloud Run routes to, does not serve them.
        annotations["run.googleapis.com/container-dependencies"] = (
            '{"collector":["whisper-service"]}'
        )
        containers.append(
            {
                "name": "collector",
                "image": COLLECTOR_IMAGE,
                "volumeMounts": [{"name": "rungmp-config", "mountPath": "/etc/rungmp/"}],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            }
        )
        extra["volumes"] = [
            {
                "name": "rungmp-config",
                "secret": {
                    "secretName": RUNGMP_SECRET,
                    "items": [{"key": "latest", "path": "config.yaml"}],
                },
            }
        ]
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
                    "annotations": annotations,
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
                        },
                        *containers,
                    ],
                    **extra,
                },
            },
            "traffic": [{"percent": 100, "latestRevision": True}],
        },
    }


# Filled in when the job is executed (gcloud run jobs execute --args ...) or edited.
BATCH_INPUT_PLACEHOLDER = "__BATCH_INPUT__"
BATCH_OUTPUT_PLACEHOLDER = "__BATCH_OUTPUT__"


def batch_job_manifest(settings: Settings, image: str = IMAGE_PLACEHOLDER) -> dict[str, Any]:
    """The Cloud Run Job that runs ``whisper-service batch`` over a gs:// prefix: each of
    ``batch_tasks`` tasks transcribes its shard (CLOUD_RUN_TASK_INDEX/COUNT), at most
    ``batch_parallelism`` at once; a failed task is rerun and resumes."""
    name = SERVICE_NAMES[settings.app_env]
    env = [{"name": k, "value": v} for k, v in environment(settings).items()]
    labels = {"app": "whisper-service", "environment": settings.app_env.value}
    task = {
        "maxRetries": settings.batch_max_retries,
        "timeoutSeconds": settings.batch_task_timeout_seconds,
        "serviceAccountName": f"{name}@{PROJECT_PLACEHOLDER}.iam.gserviceaccount.com",
        "containers": [
            {
                "name": "whisper-batch",
                "image": image,
                "args": [
                    "batch",
                    "--input",
                    BATCH_INPUT_PLACEHOLDER,
                    "--output",
                    BATCH_OUTPUT_PLACEHOLDER,
                ],
                "env": env,
                "resources": {
                    "limits": {
                        "cpu": str(settings.cpu_limit),
                        "memory": f"{settings.memory_limit_mib}Mi",
                    }
                },
            }
        ],
    }
    return {
        "apiVersion": "run.googleapis.com/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-batch", "labels": dict(labels)},
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"run.googleapis.com/execution-environment": "gen2"},
                },
                "spec": {
                    "taskCount": settings.batch_tasks,
                    "parallelism": settings.batch_parallelism,
                    "template": {"spec": task},
                },
            }
        },
    }


HEADER = "# Rendered by `whisper-service deploy render --env {env}`: do not edit by hand.\n"


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def scrape_config(settings: Settings) -> dict[str, Any]:
    """The sidecar's RunMonitoring: scrape the metrics port inside the instance (the
    content of the Secret Manager secret the manifest mounts)."""
    return {
        "apiVersion": "monitoring.googleapis.com/v1beta",
        "kind": "RunMonitoring",
        "metadata": {"name": SERVICE_NAMES[settings.app_env]},
        "spec": {
            "endpoints": [{"port": settings.metrics_port, "path": "/metrics", "interval": "30s"}]
        },
    }


def render(settings: Settings, output_dir: Path, image: str = IMAGE_PLACEHOLDER) -> list[Path]:
    """Write service.<env>.yaml, env.<env>.yaml, batch.<env>.yaml (the Cloud Run Job),
    jobs.<env>.sh and, for a metrics port, rungmp.<env>.yaml; return their paths."""
    env = settings.app_env.value
    output_dir.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(env=env)
    files = {
        f"service.{env}.yaml": service_manifest(settings, image),
        f"env.{env}.yaml": environment(settings),
        f"batch.{env}.yaml": batch_job_manifest(settings, image),
    }
    if settings.metrics_access == "port":
        files[f"rungmp.{env}.yaml"] = scrape_config(settings)
    written = []
    for name, content in files.items():
        (output_dir / name).write_text(header + _yaml(content))
        written.append(output_dir / name)
    script = output_dir / f"jobs.{env}.sh"
    script.write_text(setup_script(settings, SERVICE_NAMES[settings.app_env]))
    script.chmod(0o755)
    return [*written, script]
