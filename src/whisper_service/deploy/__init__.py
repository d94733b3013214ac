"""Deployment as code: the rules a configuration must pass to be deployed (``rules``),
the memory a model needs (``model_memory``), and the Cloud Run manifests rendered from
a preset (``cloud_run``)."""

from whisper_service.deploy.cloud_run import environment, render, service_manifest
from whisper_service.deploy.model_memory import engine_mib, process_need_mib
from whisper_service.deploy.rules import cloud_run_timeout, problems

__all__ = [
    "cloud_run_timeout",
    "engine_mib",
    "environment",
    "problems",
    "process_need_mib",
    "render",
    "service_manifest",
]
