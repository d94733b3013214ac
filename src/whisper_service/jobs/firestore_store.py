"""Job records as Firestore documents (``WHISPER_JOBS_STORE=firestore``).

One document per job in ``WHISPER_FIRESTORE_COLLECTION``, its id the job's id. Every
change of state runs in a transaction; what instances add side by side (deliveries,
progress, units stored) goes in as field transforms, which never wait on the
document's lock, and then is read back. ``GET /jobs`` is a query on
``client`` ordered by ``created_at`` (a composite index, rendered with the other
deployment assets); ``expires_at`` is the field the TTL policy deletes by.
"""

from __future__ import annotations

import time
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from whisper_service.jobs.records import Job, JobStatus
from whisper_service.jobs.store import Additions, Change, JobNotFound, expired, valid_id
from whisper_service.storage import StorageUnavailable


def _document(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    data["expires_at"] = job.expires_at  # a timestamp, which a TTL policy needs
    return data


def _job(snapshot: Any) -> Job | None:
    if not snapshot.exists:
        return None
    job = Job.model_validate(snapshot.to_dict())
    return None if expired(job) else job


class FirestoreStore:
    """Records in one Firestore collection."""

    def __init__(self, client: firestore.Client, collection: str) -> None:
        self._client = client
        self._collection = client.collection(collection)
        self.location = f"firestore:{client._database_string}/documents/{collection}"

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except JobNotFound:
            raise
        except exceptions.GoogleAPIError as exc:
            raise StorageUnavailable(f"Firestore failed {what}: {exc}") from exc

    def create(self, job: Job) -> None:
        """``create`` fails if the document exists: ids never collide silently."""
        self._call("creating a job", self._collection.document(job.id).create, _document(job))

    def get(self, job_id: str) -> Job | None:
        """The record, or None."""
        if not valid_id(job_id):
            return None
        return _job(self._call("reading a job", self._collection.document(job_id).get))

    def update(self, job_id: str, change: Change) -> Job:
        """``change`` inside a transaction (Firestore retries it on contention)."""
        if not valid_id(job_id):
            raise JobNotFound(job_id)
        reference = self._collection.document(job_id)

        @firestore.transactional  # type: ignore[untyped-decorator]
        def apply(transaction: firestore.Transaction) -> Job:
            job = _job(reference.get(transaction=transaction))
            if job is None:
                raise JobNotFound(job_id)
            changed = change(job.model_copy(deep=True))
            if changed is None:
                return job
            changed.updated_at = time.time()
            transaction.set(reference, _document(changed))
            return changed

        result: Job = self._call("updating a job", apply, self._client.transaction())
        return result

    def add(self, job_id: str, additions: Additions) -> Job:
        """Field transforms (increments, a set union), then a read: transactions from
        several instances on one document wait on its lock (the emulator: 2 s at the
        90th percentile with two writers), transforms do not."""
        if not valid_id(job_id):
            raise JobNotFound(job_id)
        reference = self._collection.document(job_id)
        fields: dict[str, Any] = {"updated_at": time.time()}
        for piece, count in additions.deliveries.items():
            fields[FieldPath("deliveries", piece).to_api_repr()] = firestore.Increment(count)
        if additions.units_done:
            fields["units_done"] = firestore.ArrayUnion(list(additions.units_done))
        if additions.windows:
            fields["progress.windows_done"] = firestore.Increment(additions.windows)
        if additions.audio_seconds:
            fields["progress.audio_seconds_done"] = firestore.Increment(additions.audio_seconds)
        try:
            self._call("updating a job", reference.update, fields)
        except StorageUnavailable as exc:
            if isinstance(exc.__cause__, exceptions.NotFound):
                raise JobNotFound(job_id) from exc
            raise
        job = _job(self._call("reading a job", reference.get))
        if job is None:
            raise JobNotFound(job_id)
        return job

    def recent(self, client: str | None, status: JobStatus | None, limit: int) -> list[Job]:
        """A query on the owner (and status), newest first."""
        query = self._collection.where(filter=firestore.FieldFilter("client", "==", client))
        if status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", status.value))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING)
        # Expired records are skipped, so ask for a few more than needed.
        snapshots = self._call("listing jobs", lambda: list(query.limit(limit * 2).stream()))
        jobs = [j for j in map(_job, snapshots) if j is not None]
        return jobs[:limit]

    def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first."""
        query = self._collection.where(
            filter=firestore.FieldFilter("status", "in", ["queued", "running"])
        )
        snapshots = self._call("listing unfinished jobs", lambda: list(query.stream()))
        jobs = [j for j in map(_job, snapshots) if j is not None]
        return sorted(jobs, key=lambda j: j.created_at)


def open_firestore(project: str | None, database: str, collection: str) -> FirestoreStore:
    """A store on ``database``/``collection``; FIRESTORE_EMULATOR_HOST, when set, points
    the client at the emulator."""
    return FirestoreStore(firestore.Client(project=project, database=database), collection)
