"""Which path a recording takes through the engine.

Short audio is decoded by Whisper's sequential loop. From ``WHISPER_LONG_AUDIO_SECONDS``
on, the recording is cut into regions at pauses that Silero VAD finds and the regions
are decoded at once (engines/regions.py), as many as the engine decodes usefully at
once (``concurrent_regions``: its batch). A recording that fits the batch one window
per region is cut into the fewest regions of at most one window each; a longer one
(or one whose speech is too uneven for that) into regions about equal in speech, at
least ``MIN_REGION_SPEECH_SECONDS`` each. Every route that transcribes a whole
recording comes here: ``/transcribe``, ``/v1/audio/*``, their SSE streams,
diarization by channel, the batch task and the command line.
"""

from __future__ import annotations

import math

import numpy as np
import structlog

from whisper_service.audio import SAMPLE_RATE
from whisper_service.engines.base import (
    CancelToken,
    Engine,
    SegmentCallback,
    TranscribeOptions,
    Transcription,
)
from whisper_service.engines.regions import Region, plan_regions, plan_window_regions
from whisper_service.engines.speech import plan_spans

log = structlog.get_logger(__name__)

# Each region starts without context, and a region shorter than a window is decoded
# twice over (Whisper closes its first window early, then decodes the rest again: 12
# encoder passes for 8 regions of 16 s on the radio address, 8 for 5 of 25 s). Single
# runs of 15-40 s did not separate speed or words (docs/benchmarks.md).
MIN_REGION_SPEECH_SECONDS = 25.0
# Regions are worth it only if none is longer than this share of the recording: the
# longest region is the request's wait, and every region start costs context. Six AMI
# meeting excerpts (180 s, a minute of silence in them) made two regions, one of 136
# s: 1.75 times the sequential time (its temperature fallbacks decode alone), +4 points.
MAX_REGION_SHARE = 2 / 3
# Speech found in spans of at most this long, unpadded, so that the gaps between them
# are the real pauses (160 ms or more) to choose from near every share; Silero's
# default padding of 400 ms hides every pause under 0.8 s.
SPEECH_SPAN_SECONDS = 5.0


def regions_for(
    engine: Engine, samples: np.ndarray, options: TranscribeOptions, long_from: float | None
) -> list[Region] | None:
    """The regions to decode ``samples`` in at once, or None for the sequential loop:
    audio shorter than ``long_from`` seconds (None: never long), an engine that
    cannot batch, too little speech for two regions, or speech so uneven that one
    region would hold most of the recording."""
    duration = len(samples) / SAMPLE_RATE
    if long_from is None or duration < long_from or engine.concurrent_regions < 2:
        return None
    if options.prefix is not None:
        return None
    speech = plan_spans(samples, "vad", SPEECH_SPAN_SECONDS, speech_pad_ms=0)
    regions = plan_window_regions(speech, duration, engine.concurrent_regions)
    if regions is None:
        spoken = sum(end - start for start, end in speech)
        count = min(engine.concurrent_regions, math.floor(spoken / MIN_REGION_SPEECH_SECONDS))
        regions = plan_regions(speech, duration, count)
    if len(regions) < 2 or max(end - start for start, end in regions) > MAX_REGION_SHARE * duration:
        return None
    return regions


def transcribe_audio(
    engine: Engine,
    samples: np.ndarray,
    options: TranscribeOptions,
    token: CancelToken | None = None,
    on_segment: SegmentCallback | None = None,
    *,
    long_from: float | None,
) -> Transcription:
    """Transcribe a whole recording: in regions at once when it is long (see
    ``regions_for``), else sequentially; the same Transcription either way."""
    regions = regions_for(engine, samples, options, long_from)
    if regions is None:
        return engine.transcribe(samples, options, token, on_segment)
    log.info(
        "decoding_regions", regions=len(regions), audio_seconds=round(len(samples) / SAMPLE_RATE, 3)
    )
    return engine.transcribe_regions(samples, regions, options, token, on_segment)
