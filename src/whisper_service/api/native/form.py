"""The form fields /transcribe and /jobs share, declared once.

``TranscriptionForm`` is a FastAPI dependency (``Annotated[TranscriptionForm,
Depends()]``): FastAPI reads its fields as multipart form fields, with their bounds
and descriptions, and documents them in the OpenAPI schema.
"""

# No `from __future__ import annotations`: FastAPI reads a dependency class's field
# types from its signature, and string annotations there cannot be resolved.

from dataclasses import dataclass
from typing import Annotated

from fastapi import File, Form, UploadFile

from whisper_service.api.params import Diarize, diarize_options, parse_language
from whisper_service.config import Settings
from whisper_service.diarization.speakers import DiarizeOptions
from whisper_service.engines import Task, TranscribeOptions
from whisper_service.engines.base import MAX_PROMPT_CHARS
from whisper_service.errors import InvalidParameter, ServiceError
from whisper_service.formats import ResponseFormat


@dataclass
class TranscriptionForm:
    """Audio source and decoding options of /transcribe and POST /jobs."""

    file: Annotated[
        UploadFile | None, File(description="Audio or video file with an audio stream")
    ] = None
    gcs_uri: Annotated[
        str | None, Form(description="gs://bucket/object instead of a file (allowed buckets)")
    ] = None
    save_to_gcs: Annotated[
        bool, Form(description="Also write the transcript to WHISPER_GCS_OUTPUT_URI")
    ] = False
    language: Annotated[str | None, Form(description="ISO 639-1 code; detected if empty")] = None
    task: Annotated[Task, Form()] = "transcribe"
    response_format: Annotated[
        ResponseFormat,
        Form(description="Answer format (for a job: of /jobs/{id}/result and the GCS output)"),
    ] = ResponseFormat.JSON
    word_timestamps: Annotated[bool, Form()] = False
    temperature: Annotated[
        float, Form(ge=0.0, le=1.0, description="0 = Whisper's fallback schedule")
    ] = 0.0
    beam_size: Annotated[int | None, Form(ge=1, le=16)] = None
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None
    vad_filter: Annotated[
        bool, Form(description="Skip silence (Silero VAD); jobs cut at pauses either way")
    ] = False
    diarize: Annotated[
        Diarize,
        Form(
            description="Speaker labels: true = told apart by voice, channel = one "
            "speaker per channel of a stereo recording"
        ),
    ] = Diarize.FALSE
    min_speakers: Annotated[
        int | None, Form(ge=1, le=32, description="With diarize=true: at least this many")
    ] = None
    max_speakers: Annotated[
        int | None,
        Form(ge=1, le=32, description="With diarize=true: at most this many (default 8)"),
    ] = None

    def check_source(self, settings: Settings) -> None:
        """Exactly one audio source, and an output location when the caller wants one."""
        if (self.file is None) == (not self.gcs_uri):
            raise InvalidParameter("send exactly one of file and gcs_uri", param="file")
        if self.save_to_gcs and not settings.gcs_output_uri:
            raise ServiceError(
                "save_to_gcs needs WHISPER_GCS_OUTPUT_URI on the server",
                code="unsupported_option",
                status=400,
                param="save_to_gcs",
            )

    def diarization(self, settings: Settings) -> DiarizeOptions | None:
        """The speakers asked for (None: none), checked."""
        return diarize_options(settings, self.diarize, self.min_speakers, self.max_speakers)

    def options(self, settings: Settings) -> TranscribeOptions:
        """The engine options these fields ask for (server defaults filled in)."""
        return TranscribeOptions(
            language=parse_language(self.language),
            task=self.task,
            beam_size=self.beam_size or settings.default_beam_size,
            temperature=self.temperature,
            prompt=self.prompt or None,
            word_timestamps=self.word_timestamps,
            vad_filter=self.vad_filter,
        )
