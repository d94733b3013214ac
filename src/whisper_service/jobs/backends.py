"""Opening the jobs backends the settings name: the record store, the files and the
queue (one protocol each, two backends)."""

from __future__ import annotations

from pathlib import Path

from whisper_service.config import Settings
from whisper_service.jobs.dispatch import LocalQueue, PubSubQueue, Queue
from whisper_service.jobs.files import JobFiles
from whisper_service.jobs.objects import LocalObjects, open_objects
from whisper_service.jobs.store import DirectoryStore, JobStore
from whisper_service.storage import GcsStorage


def open_store(settings: Settings) -> JobStore:
    """``firestore``, or the directory WHISPER_JOBS_STORE names."""
    location = str(settings.jobs_store)
    if location == "firestore":
        from whisper_service.jobs.firestore_store import open_firestore

        return open_firestore(
            settings.gcp_project, settings.firestore_database, settings.firestore_collection
        )
    return DirectoryStore(LocalObjects(Path(location)))


def open_files(settings: Settings, storage: GcsStorage) -> JobFiles:
    """WHISPER_JOBS_FILES (gs:// or a directory), else the store's own directory."""
    return JobFiles(open_objects(settings.jobs_files or str(settings.jobs_store), storage))


def open_queue(settings: Settings) -> Queue:
    """Pub/Sub, or this process's own queue."""
    if settings.jobs_queue == "pubsub":
        return PubSubQueue(str(settings.pubsub_topic))
    return LocalQueue(settings.jobs_concurrency, settings.jobs_max_attempts)
