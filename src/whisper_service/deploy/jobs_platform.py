"""What async jobs need on Google Cloud, rendered from the presets: the settings that
point an instance at them, and ``jobs.<env>.sh``, the gcloud commands that create
them (topics, push subscriptions, Firestore TTL policy and indexes, the bucket's
lifecycle rule, IAM bindings).

The script is idempotent in effect: run it once per project and environment after
the service exists (the push endpoint is the service's URL). Placeholders, as in the
Cloud Run manifests: ``__PROJECT_ID__``, and ``__REGION__`` for the service's region.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass

from whisper_service.config import AppEnv, Settings, env_var_name
from whisper_service.jobs.push_auth import route_audience

PROJECT = "__PROJECT_ID__"
REGION = "__REGION__"
# Pub/Sub's longest ack deadline: a unit (jobs_unit_seconds) must finish well inside.
ACK_DEADLINE_SECONDS = 600
RETRY_MIN_SECONDS = 10
RETRY_MAX_SECONDS = 600
PUSH_PATH = "/internal/jobs/units"
DEAD_LETTER_PATH = "/internal/jobs/dead-letters"


@dataclass(frozen=True)
class JobsNames:
    """The names of one environment's job resources."""

    env: AppEnv
    service: str

    @property
    def suffix(self) -> str:
        return "" if self.env is AppEnv.PRODUCTION else f"-{self.env.value}"

    @property
    def topic(self) -> str:
        return f"whisper-jobs{self.suffix}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}-dead-letter"

    @property
    def subscription(self) -> str:
        return f"{self.topic}-push"

    @property
    def dead_letter_subscription(self) -> str:
        return f"{self.dead_letter_topic}-push"

    @property
    def push_account(self) -> str:
        return f"whisper-pubsub-push@{PROJECT}.iam.gserviceaccount.com"

    @property
    def service_account(self) -> str:
        return f"{self.service}@{PROJECT}.iam.gserviceaccount.com"

    @property
    def audience(self) -> str:
        """The OIDC audience base the service checks: each subscription signs for it
        followed by its route's path (``route_audience``)."""
        return f"{self.service}-jobs"

    @property
    def bucket(self) -> str:
        return f"{PROJECT}-whisper-jobs"

    @property
    def collection(self) -> str:
        return f"whisper-jobs{self.suffix}"


def jobs_platform(env: AppEnv, service: str) -> dict[str, str]:
    """The settings of an instance of ``service`` on Cloud Run: Firestore, GCS and
    Pub/Sub."""
    names = JobsNames(env, service)
    values = {
        "jobs_store": "firestore",
        "jobs_files": f"gs://{names.bucket}/{env.value}",
        "jobs_queue": "pubsub",
        "pubsub_topic": f"projects/{PROJECT}/topics/{names.topic}",
        "pubsub_dead_letter_topic": f"projects/{PROJECT}/topics/{names.dead_letter_topic}",
        "pubsub_push_audience": names.audience,
        "pubsub_push_service_account": names.push_account,
        "firestore_collection": names.collection,
    }
    return {env_var_name(field): value for field, value in values.items()}


def _command(command: str, *flags: str) -> str:
    """One gcloud command, a flag per line. Everything is quoted for the shell, except
    flags holding the script's own variables (``$SERVICE_URL``), which come in double
    quotes already."""
    head = shlex.join(command.split())
    quoted = [f if "$" in f else shlex.quote(f) for f in flags]
    return " \\\n    ".join([head, *quoted])


def _subscription(name: str, topic: str, path: str, names: JobsNames, extra: list[str]) -> str:
    return _command(
        f"gcloud pubsub subscriptions create {name}",
        f"--topic={topic}",
        f'--push-endpoint="$SERVICE_URL{path}"',
        f"--push-auth-service-account={names.push_account}",
        # Its own route's audience: its token is refused on the other route.
        f"--push-auth-token-audience={route_audience(names.audience, path)}",
        f"--ack-deadline={ACK_DEADLINE_SECONDS}",
        f"--min-retry-delay={RETRY_MIN_SECONDS}s",
        f"--max-retry-delay={RETRY_MAX_SECONDS}s",
        *extra,
    )


def _lifecycle(days: int) -> str:
    prefixes = [f"{env.value}/" for env in AppEnv]
    rule = {"action": {"type": "Delete"}, "condition": {"age": days, "matchesPrefix": prefixes}}
    return json.dumps({"rule": [rule]})


def setup_script(settings: Settings, service: str) -> str:
    """``jobs.<env>.sh``: create what the jobs of ``service`` (``settings.app_env``) run
    on."""
    names = JobsNames(settings.app_env, service)
    retention_days = math.ceil(settings.jobs_retention_seconds / 86_400) + 1
    member = f"serviceAccount:{names.service_account}"
    pubsub_agent = (
        '"--member=serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"'
    )
    lines = [
        "#!/usr/bin/env bash",
        f"# Rendered by `whisper-service deploy render --env {settings.app_env.value}`: do not "
        "edit by hand.",
        "# Pub/Sub, Firestore and Cloud Storage for async jobs (docs/deployment.md).",
        "set -euo pipefail",
        f'SERVICE_URL="$(gcloud run services describe {names.service} --region={REGION} '
        "--format='value(status.url)')\"",
        f"PROJECT_NUMBER=\"$(gcloud projects describe {PROJECT} --format='value(projectNumber)')\"",
        "",
        "# Topics: units, and the ones that failed on every delivery.",
        _command(f"gcloud pubsub topics create {names.topic}"),
        _command(f"gcloud pubsub topics create {names.dead_letter_topic}"),
        "",
        "# The account push requests are signed as (the service checks it is this one).",
        f"gcloud iam service-accounts describe {names.push_account} >/dev/null 2>&1 ||",
        "  "
        + _command(
            "gcloud iam service-accounts create whisper-pubsub-push",
            "--display-name=Pub/Sub pushes of whisper-service jobs",
        ),
        "",
        "# Push subscriptions: any instance gets a unit; a 2xx acks it; after "
        f"{settings.jobs_max_attempts} deliveries",
        "# it is dead-lettered, and the dead-letter push fails its job.",
        _subscription(
            names.subscription,
            names.topic,
            PUSH_PATH,
            names,
            [
                f"--dead-letter-topic={names.dead_letter_topic}",
                f"--max-delivery-attempts={settings.jobs_max_attempts}",
            ],
        ),
        _subscription(
            names.dead_letter_subscription, names.dead_letter_topic, DEAD_LETTER_PATH, names, []
        ),
        "",
        "# Who may do what: the service publishes and pushes are signed by the push account;",
        "# Pub/Sub's own agent moves dead letters and mints the push tokens.",
        _command(
            f"gcloud pubsub topics add-iam-policy-binding {names.topic}",
            f"--member={member}",
            "--role=roles/pubsub.publisher",
        ),
        _command(
            f"gcloud pubsub topics add-iam-policy-binding {names.dead_letter_topic}",
            pubsub_agent,
            "--role=roles/pubsub.publisher",
        ),
        _command(
            f"gcloud pubsub subscriptions add-iam-policy-binding {names.subscription}",
            pubsub_agent,
            "--role=roles/pubsub.subscriber",
        ),
        _command(
            f"gcloud iam service-accounts add-iam-policy-binding {names.push_account}",
            pubsub_agent,
            "--role=roles/iam.serviceAccountTokenCreator",
        ),
        _command(
            f"gcloud run services add-iam-policy-binding {names.service}",
            f"--region={REGION}",
            f"--member=serviceAccount:{names.push_account}",
            "--role=roles/run.invoker",
        ),
        _command(
            f"gcloud projects add-iam-policy-binding {PROJECT}",
            f"--member={member}",
            "--role=roles/datastore.user",
        ),
        "",
        "# Records: expired ones deleted by TTL; GET /jobs queries by owner, newest first.",
        _command(
            "gcloud firestore fields ttls update expires_at",
            f"--collection-group={names.collection}",
            f"--database={settings.firestore_database}",
            "--enable-ttl",
        ),
        _command(
            "gcloud firestore indexes composite create",
            f"--collection-group={names.collection}",
            f"--database={settings.firestore_database}",
            "--field-config=field-path=client,order=ascending",
            "--field-config=field-path=created_at,order=descending",
        ),
        _command(
            "gcloud firestore indexes composite create",
            f"--collection-group={names.collection}",
            f"--database={settings.firestore_database}",
            "--field-config=field-path=client,order=ascending",
            "--field-config=field-path=status,order=ascending",
            "--field-config=field-path=created_at,order=descending",
        ),
        "",
        f"# Files: a job's input, units and result, kept {retention_days} days at most. This",
        "# replaces the bucket's lifecycle, so the rule covers every environment's prefix.",
        f"cat > /tmp/whisper-jobs-lifecycle.json <<'JSON'\n{_lifecycle(retention_days)}\nJSON",
        _command(
            f"gcloud storage buckets update gs://{names.bucket}",
            "--lifecycle-file=/tmp/whisper-jobs-lifecycle.json",
        ),
        _command(
            f"gcloud storage buckets add-iam-policy-binding gs://{names.bucket}",
            f"--member={member}",
            "--role=roles/storage.objectAdmin",
        ),
    ]
    return "\n".join(lines) + "\n"
