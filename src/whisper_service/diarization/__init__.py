"""Speaker diarization on CPU, offline: who said what (docs/api.md, "Speakers").

``speakers`` finds the turns (VAD, embeddings, clustering), ``attribution`` puts them
on a transcript; ``encoder`` and ``clustering`` are its two models.
"""

from whisper_service.diarization.attribution import attribute, speakers_in
from whisper_service.diarization.speakers import (
    DiarizeOptions,
    KnownSpeaker,
    SpeakerWindows,
    Turn,
    diarize,
    embed_speech,
    label_turns,
    voice_embedding,
)

__all__ = [
    "DiarizeOptions",
    "KnownSpeaker",
    "SpeakerWindows",
    "Turn",
    "attribute",
    "diarize",
    "embed_speech",
    "label_turns",
    "speakers_in",
    "voice_embedding",
]
