#!/usr/bin/env python3
"""The deployment-config validation suite (run by `make test` and by Cloud Build).

    python scripts/testing/validate_deployment.py [--env production] [--dockerfile F]
        [--manifest-dir D] [--cloudbuild F]

Checks, each printed as ok/FAIL with the reason; exit 1 if any fails:

* every YAML file under deployment/ parses;
* the settings of each preset pass every deployment rule (config_validation);
* the committed Cloud Run manifests equal what `whisper-service deploy render` writes;
* each manifest has the required fields; production runs 1-10 instances;
* every environment variable in a manifest is a known setting;
* the probes point at routes that exist in the app;
* Dockerfile.secure: linux/amd64, digest-pinned base, hashed install, non-root USER,
  HEALTHCHECK on /health/live, exec-form ENTRYPOINT, the model prepared at build;
* cloudbuild.yaml: the build is linux/amd64 with Dockerfile.secure, and it passes
  check-jsonschema's built-in Cloud Build schema.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from whisper_service.config import AppEnv, Settings, SettingsError, env_var_name, preset_settings
from whisper_service.deploy.cloud_run import LIVENESS_PROBE_PATH, render
from whisper_service.deploy.rules import problems as settings_problems

REPO = Path(__file__).resolve().parents[2]
ENVS = [e.value for e in AppEnv]
# Variables a manifest may set besides Settings': the platform's and OpenTelemetry's.
EXTRA_ENV = re.compile(r"^(OTEL_[A-Z_]+|GOOGLE_CLOUD_PROJECT)$")

Check = Callable[[], list[str]]


def known_env_vars() -> set[str]:
    """Every environment variable Settings reads."""
    return {env_var_name(field) for field in Settings.model_fields}


def app_routes() -> set[str]:
    """Paths the app serves (the routers, without building or starting the app)."""
    from whisper_service.api import METRICS_ROUTER, ROUTERS

    paths = set()
    for router in (*ROUTERS, METRICS_ROUTER):
        paths |= {getattr(route, "path", "") for route in router.routes}
    return paths


def check_yaml_parses(root: Path) -> list[str]:
    """Every YAML document under ``root`` parses."""
    found = []
    for path in sorted(root.rglob("*.y*ml")):
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            found.append(f"{path.relative_to(root.parent)} does not parse: {exc}")
    return found


def check_presets(env: str) -> list[str]:
    """The preset's settings load and pass every deployment rule."""
    try:
        settings = preset_settings(env)
    except SettingsError as exc:
        return [f"preset {env}: {exc}"]
    return [f"preset {env}: {p}" for p in settings_problems(settings)]


def check_rendered_equal(env: str, manifest_dir: Path) -> list[str]:
    """The committed manifests are exactly what the code renders."""
    with tempfile.TemporaryDirectory() as tmp:
        found = []
        for rendered in render(preset_settings(env), Path(tmp)):
            committed = manifest_dir / rendered.name
            if not committed.is_file():
                found.append(f"{committed} is missing: run `make render`")
            elif committed.read_text() != rendered.read_text():
                found.append(f"{committed} differs from the rendered one: run `make render`")
        return found


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return container


def check_manifest(env: str, manifest_dir: Path) -> list[str]:
    """Required fields, instance bounds, known env vars, probes on real routes."""
    path = manifest_dir / f"service.{env}.yaml"
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: {exc}"]
    found = []
    if manifest.get("apiVersion") != "serving.knative.dev/v1" or manifest.get("kind") != "Service":
        found.append(f"{path}: not a serving.knative.dev/v1 Service")
    try:
        template = manifest["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        spec = template["spec"]
        container = _container(manifest)
        minimum = int(annotations["autoscaling.knative.dev/minScale"])
        maximum = int(annotations["autoscaling.knative.dev/maxScale"])
        for field in ("containerConcurrency", "timeoutSeconds", "serviceAccountName"):
            if field not in spec:
                found.append(f"{path}: spec.template.spec.{field} is missing")
        for field in ("image", "resources", "startupProbe", "livenessProbe", "env"):
            if field not in container:
                found.append(f"{path}: container {field} is missing")
        limits = container.get("resources", {}).get("limits", {})
        if "cpu" not in limits or "memory" not in limits:
            found.append(f"{path}: container resources.limits needs cpu and memory")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return [*found, f"{path}: required field missing or malformed: {exc}"]
    if env == AppEnv.PRODUCTION.value and not (1 <= minimum <= maximum <= 10):
        found.append(f"{path}: production must run 1-10 instances, has {minimum}-{maximum}")
    if minimum > maximum:
        found.append(f"{path}: minScale {minimum} > maxScale {maximum}")
    known = known_env_vars()
    for variable in container.get("env", []):
        name = variable.get("name", "")
        if name not in known and not EXTRA_ENV.match(name):
            found.append(f"{path}: env {name} is not a setting the service reads")
        if name == "PORT":
            found.append(f"{path}: env PORT is reserved: Cloud Run sets it")
    routes = app_routes()
    for probe in ("startupProbe", "livenessProbe"):
        probe_path = container.get(probe, {}).get("httpGet", {}).get("path")
        if probe_path not in routes:
            found.append(f"{path}: {probe} path {probe_path!r} is not a route of the app")
    return found


def check_dockerfile(path: Path) -> list[str]:
    """Hardening rules of the image."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [f"{path}: {exc}"]
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [ln for ln in instructions if ln.upper().startswith("FROM ")]
    found = []
    if len(froms) < 2:
        found.append(f"{path}: not multi-stage (build tools must stay out of the runtime)")
    stages: set[str] = set()
    for line in froms:
        words = line.split()
        base = next(w for w in words[1:] if not w.startswith("--"))
        # A stage built on an earlier stage inherits its platform; so does one chosen
        # among earlier stages by a build argument (`venv-${ENGINES}`: a literal
        # prefix that only stages carry). Every image pulled must name linux/amd64.
        prefix = base.split("${", 1)[0]
        inherits = base in stages or (
            "${" in base and bool(prefix) and any(s.startswith(prefix) for s in stages)
        )
        if "--platform=linux/amd64" not in line and not inherits:
            found.append(f"{path}: `{line}` is not pinned to linux/amd64")
        if len(words) >= 4 and words[-2].upper() == "AS":
            stages.add(words[-1])
    if not re.search(r"^ARG PYTHON_IMAGE=\S+@sha256:[0-9a-f]{64}$", text, re.M):
        found.append(f"{path}: the base image is not pinned by digest")
    if "--require-hashes" not in text:
        found.append(f"{path}: dependencies are not installed with --require-hashes")
    users = [ln.split(None, 1)[1] for ln in instructions if ln.upper().startswith("USER ")]
    if not users:
        found.append(f"{path}: no USER: the container would run as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        found.append(f"{path}: USER {users[-1]} runs the service as root")
    healthchecks = [ln for ln in instructions if ln.upper().startswith("HEALTHCHECK")]
    if not healthchecks:
        found.append(f"{path}: no HEALTHCHECK")
    elif LIVENESS_PROBE_PATH not in healthchecks[-1]:
        found.append(f"{path}: HEALTHCHECK does not probe {LIVENESS_PROBE_PATH}")
    entrypoints = [ln for ln in instructions if ln.upper().startswith("ENTRYPOINT")]
    if not entrypoints or not entrypoints[-1].split(None, 1)[1].startswith("["):
        found.append(f"{path}: ENTRYPOINT must be exec form")
    if "whisper-service models prepare" not in text:
        found.append(f"{path}: the model is not prepared at build time")
    for variable in ("PYTHONHASHSEED=random", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        if variable not in text:
            found.append(f"{path}: {variable} is not set")
    return found


def check_cloudbuild(path: Path) -> list[str]:
    """amd64 build of Dockerfile.secure; check-jsonschema's Cloud Build schema."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: {exc}"]
    found = []
    builds = [s for s in config.get("steps", []) if "build" in s.get("args", [])[:1]]
    if not builds:
        found.append(f"{path}: no docker build step")
    for step in builds:
        args = step["args"]
        if "--platform=linux/amd64" not in args:
            found.append(f"{path}: the build step does not pass --platform=linux/amd64")
        if "Dockerfile.secure" not in args:
            found.append(f"{path}: the build step does not use Dockerfile.secure")
    for name in ("_ENV", "_REGION", "_REPOSITORY", "_SERVICE"):
        if name not in config.get("substitutions", {}):
            found.append(f"{path}: substitution {name} is missing")
    if "timeout" not in config:
        found.append(f"{path}: no explicit timeout")
    validator = shutil.which("check-jsonschema") or str(
        Path(sys.executable).with_name("check-jsonschema")
    )
    if Path(validator).exists():
        result = subprocess.run(
            [validator, "--builtin-schema", "vendor.cloudbuild", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            found.append(f"{path}: Cloud Build schema: {result.stdout.strip()}")
    else:
        found.append("check-jsonschema is not installed (pip install check-jsonschema)")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run every check; print ok/FAIL lines; exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", choices=ENVS, help="default: every preset")
    parser.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile.secure")
    parser.add_argument("--manifest-dir", type=Path, default=REPO / "deployment" / "cloud-run")
    parser.add_argument(
        "--cloudbuild", type=Path, default=REPO / "deployment" / "cloud-run" / "cloudbuild.yaml"
    )
    args = parser.parse_args(argv)
    checks: list[tuple[str, Check]] = [
        ("YAML parses", lambda: check_yaml_parses(REPO / "deployment")),
        ("Dockerfile.secure", lambda: check_dockerfile(args.dockerfile)),
        ("cloudbuild.yaml", lambda: check_cloudbuild(args.cloudbuild)),
    ]
    manifests = args.manifest_dir
    for env in args.env or ENVS:
        checks += [
            (f"{env}: settings rules", lambda env=env: check_presets(env)),
            (f"{env}: manifests up to date", lambda env=env: check_rendered_equal(env, manifests)),
            (f"{env}: manifest", lambda env=env: check_manifest(env, manifests)),
        ]
    failures = 0
    for title, check in checks:
        found = check()
        failures += len(found)
        print(f"{'FAIL' if found else 'ok  '} {title}")
        for problem in found:
            print(f"       {problem}")
    print(f"{len(checks)} checks, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
