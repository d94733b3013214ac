#!/usr/bin/env bash
# Rendered by `whisper-service deploy render --env production`: do not edit by hand.
# Pub/Sub, Firestore and Cloud Storage for async jobs (docs/deployment.md).
set -euo pipefail
SERVICE_URL="$(gcloud run services describe whisper-service --region=__REGION__ --format='value(status.url)')"
PROJECT_NUMBER="$(gcloud projects describe __PROJECT_ID__ --format='value(projectNumber)')"

# Topics: units, and the ones that failed on every delivery.
gcloud pubsub topics create whisper-jobs
gcloud pubsub topics create whisper-jobs-dead-letter

# The account push requests are signed as (the service checks it is this one).
gcloud iam service-accounts describe whisper-pubsub-push@__PROJECT_ID__.iam.gserviceaccount.com >/dev/null 2>&1 ||
  gcloud iam service-accounts create whisper-pubsub-push \
    '--display-name=Pub/Sub pushes of whisper-service jobs'

# Push subscriptions: any instance gets a unit; a 2xx acks it; after 5 deliveries
# it is dead-lettered, and the dead-letter push fails its job.
gcloud pubsub subscriptions create whisper-jobs-push \
    --topic=whisper-jobs \
    --push-endpoint="$SERVICE_URL/internal/jobs/units" \
    --push-auth-service-account=whisper-pubsub-push@__PROJECT_ID__.iam.gserviceaccount.com \
    --push-auth-token-audience=whisper-service-jobs/internal/jobs/units \
    --ack-deadline=600 \
    --min-retry-delay=10s \
    --max-retry-delay=600s \
    --dead-letter-topic=whisper-jobs-dead-letter \
    --max-delivery-attempts=5
gcloud pubsub subscriptions create whisper-jobs-dead-letter-push \
    --topic=whisper-jobs-dead-letter \
    --push-endpoint="$SERVICE_URL/internal/jobs/dead-letters" \
    --push-auth-service-account=whisper-pubsub-push@__PROJECT_ID__.iam.gserviceaccount.com \
    --push-auth-token-audience=whisper-service-jobs/internal/jobs/dead-letters \
    --ack-deadline=600 \
    --min-retry-delay=10s \
    --max-retry-delay=600s

# Who may do what: the service publishes and pushes are signed by the push account;
# Pub/Sub's own agent moves dead letters and mints the push tokens.
gcloud pubsub topics add-iam-policy-binding whisper-jobs \
    --member=serviceAccount:whisper-service@__PROJECT_ID__.iam.gserviceaccount.com \
    --role=roles/pubsub.publisher
gcloud pubsub topics add-iam-policy-binding whisper-jobs-dead-letter \
    "--member=serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com" \
    --role=roles/pubsub.publisher
gcloud pubsub subscriptions add-iam-policy-binding whisper-jobs-push \
    "--member=serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com" \
    --role=roles/pubsub.subscriber
gcloud iam service-accounts add-iam-policy-binding whisper-pubsub-push@__PROJECT_ID__.iam.gserviceaccount.com \
    "--member=serviceAccount:service-$PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com" \
    --role=roles/iam.serviceAccountTokenCreator
gcloud run services add-iam-policy-binding whisper-service \
    --region=__REGION__ \
    --member=serviceAccount:whisper-pubsub-push@__PROJECT_ID__.iam.gserviceaccount.com \
    --role=roles/run.invoker
gcloud projects add-iam-policy-binding __PROJECT_ID__ \
    --member=serviceAccount:whisper-service@__PROJECT_ID__.iam.gserviceaccount.com \
    --role=roles/datastore.user

# Records: expired ones deleted by TTL; GET /jobs queries by owner, newest first.
gcloud firestore fields ttls update expires_at \
    --collection-group=whisper-jobs \
    '--database=(default)' \
    --enable-ttl
gcloud firestore indexes composite create \
    --collection-group=whisper-jobs \
    '--database=(default)' \
    --field-config=field-path=client,order=ascending \
    --field-config=field-path=created_at,order=descending
gcloud firestore indexes composite create \
    --collection-group=whisper-jobs \
    '--database=(default)' \
    --field-config=field-path=client,order=ascending \
    --field-config=field-path=status,order=ascending \
    --field-config=field-path=created_at,order=descending

# Files: a job's input, units and result, kept 8 days at most. This
# replaces the bucket's lifecycle, so the rule covers every environment's prefix.
cat > /tmp/whisper-jobs-lifecycle.json <<'JSON'
{"rule": [{"action": {"type": "Delete"}, "condition": {"age": 8, "matchesPrefix": ["production/", "staging/", "development/"]}}]}
JSON
gcloud storage buckets update gs://__PROJECT_ID__-whisper-jobs \
    --lifecycle-file=/tmp/whisper-jobs-lifecycle.json
gcloud storage buckets add-iam-policy-binding gs://__PROJECT_ID__-whisper-jobs \
    --member=serviceAccount:whisper-service@__PROJECT_ID__.iam.gserviceaccount.com \
    --role=roles/storage.objectAdmin
