"""A job's files, in a directory or under a gs:// prefix (``objects``)::

    jobs/<id>/input                 an uploaded file, until the job ends
    jobs/<id>/plan.json             the units the audio was cut into
    jobs/<id>/units/<n>.pcm         unit n's audio: 16 kHz mono, 16-bit little-endian
    jobs/<id>/units/<n>.spec.json   unit n's windows and language
    jobs/<id>/units/<n>.json        unit n's checkpoint (windows done, their segments)
    jobs/<id>/units/<n>.speakers.npz  with diarize: unit n's speech windows, embedded
    jobs/<id>/result.json           the merged transcription

Every file is written whole by one writer and never changed in place, except a unit's
checkpoint, which only the instance running the unit writes. So no compare-and-swap
is needed here: the record's transactions decide who does what.
"""

from __future__ import annotations

import io
from typing import IO

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.diarization.speakers import SpeakerWindows
from whisper_service.engines.base import Transcription
from whisper_service.jobs.objects import ObjectStore
from whisper_service.jobs.records import TRANSCRIPTION, Plan, Unit, UnitCheckpoint, UnitSpec
from whisper_service.jobs.store import JOBS

PCM_SCALE = 32767.0


class JobFiles:
    """Typed access to the files of jobs."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.location = objects.location

    def put_input(self, job_id: str, upload: IO[bytes]) -> None:
        """Keep an uploaded input until the job ends."""
        self.objects.upload(f"{JOBS}{job_id}/input", upload)

    def get_input(self, job_id: str, target: IO[bytes]) -> bool:
        """Copy the uploaded input into ``target``; False if it is gone."""
        return self.objects.download(f"{JOBS}{job_id}/input", target)

    def put_plan(self, job_id: str, plan: Plan) -> None:
        """The units, once their audio is stored."""
        self.objects.write(f"{JOBS}{job_id}/plan.json", plan.model_dump_json().encode())

    def get_plan(self, job_id: str) -> Plan | None:
        """The plan, if the job got that far."""
        found = self.objects.read(f"{JOBS}{job_id}/plan.json")
        return None if found is None else Plan.model_validate_json(found[0])

    def put_unit_audio(self, job_id: str, number: int, samples: np.ndarray) -> None:
        """A unit's samples as 16-bit PCM: half the bytes of float32, and what Whisper's
        own loader produces anyway."""
        pcm = np.clip(samples * PCM_SCALE, -32768, 32767).astype("<i2")
        self.objects.write(f"{JOBS}{job_id}/units/{number}.pcm", pcm.tobytes())

    def get_unit_audio(self, job_id: str, number: int) -> np.ndarray | None:
        """A unit's samples as float32, or None if missing."""
        found = self.objects.read(f"{JOBS}{job_id}/units/{number}.pcm")
        if found is None:
            return None
        return np.frombuffer(found[0], dtype="<i2").astype(np.float32) / PCM_SCALE

    def put_unit_spec(self, job_id: str, number: int, spec: UnitSpec) -> None:
        """What unit ``number``'s delivery needs (after its audio)."""
        self.objects.write(
            f"{JOBS}{job_id}/units/{number}.spec.json", spec.model_dump_json().encode()
        )

    def get_unit_spec(self, job_id: str, number: int) -> UnitSpec | None:
        """Unit ``number``'s windows and language, if stored."""
        found = self.objects.read(f"{JOBS}{job_id}/units/{number}.spec.json")
        return None if found is None else UnitSpec.model_validate_json(found[0])

    def put_checkpoint(self, job_id: str, number: int, checkpoint: UnitCheckpoint) -> None:
        """Unit ``number``'s progress."""
        data = checkpoint.model_dump_json().encode()
        self.objects.write(f"{JOBS}{job_id}/units/{number}.json", data)

    def get_checkpoint(self, job_id: str, number: int) -> UnitCheckpoint | None:
        """Unit ``number``'s progress, if it started."""
        found = self.objects.read(f"{JOBS}{job_id}/units/{number}.json")
        return None if found is None else UnitCheckpoint.model_validate_json(found[0])

    def put_unit_speakers(self, job_id: str, number: int, found: SpeakerWindows) -> None:
        """Unit ``number``'s speech windows (timeline times) and their embeddings."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            windows=np.asarray(found.windows, dtype=np.float64).reshape(-1, 2),
            regions=np.asarray(found.regions, dtype=np.int64),
            embeddings=found.embeddings.astype(np.float32),
        )
        self.objects.write(f"{JOBS}{job_id}/units/{number}.speakers.npz", buffer.getvalue())

    def get_unit_speakers(self, job_id: str, number: int) -> SpeakerWindows | None:
        """Unit ``number``'s embedded speech windows, if stored."""
        found = self.objects.read(f"{JOBS}{job_id}/units/{number}.speakers.npz")
        if found is None:
            return None
        with np.load(io.BytesIO(found[0])) as data:
            return SpeakerWindows(
                windows=[(float(a), float(b)) for a, b in data["windows"]],
                regions=[int(r) for r in data["regions"]],
                embeddings=data["embeddings"],
            )

    def put_result(self, job_id: str, result: Transcription) -> None:
        """The merged transcription."""
        self.objects.write(f"{JOBS}{job_id}/result.json", TRANSCRIPTION.dump_json(result))

    def get_result(self, job_id: str) -> Transcription | None:
        """The merged transcription, if there is one."""
        found = self.objects.read(f"{JOBS}{job_id}/result.json")
        return None if found is None else TRANSCRIPTION.validate_json(found[0])

    def discard_work(self, job_id: str) -> None:
        """Remove the input, plan and units of a finished job (the result stays)."""
        self.objects.delete(f"{JOBS}{job_id}/input")
        self.objects.delete(f"{JOBS}{job_id}/plan.json")
        for name in self.objects.names(f"{JOBS}{job_id}/units/"):
            self.objects.delete(name)


def unit_samples(audio: np.ndarray, unit: Unit) -> np.ndarray:
    """The part of the decoded recording a unit covers."""
    return audio[int(unit.start * SAMPLE_RATE) : int(np.ceil(unit.end * SAMPLE_RATE))]
