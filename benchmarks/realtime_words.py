"""Live finals' words on spontaneous speech (docs/benchmarks.md, "Live finals on
spontaneous speech"; issue 25, item 1), in-process with the production preset's
engine (tiny.en, float32): each recording streamed through one live session with
server VAD at OpenAI's defaults, its finals joined, against

- ``/transcribe``'s text of the same recording (the engine on the whole file, 5
  beams): the words apart;
- the ``base`` model's text of it (a silver transcript: no human transcript of these
  recordings is available here), for both the finals and ``/transcribe``: whether
  the finals lose words the whole file keeps, or differ where both are unsure;
- the reference speaker turns (human annotation, AMI's and the call's): turns with text
  where nobody spoke.

Recordings: ten 30 s AMI meeting excerpts and a 30 s telephone call (spontaneous),
pooled over those that chose the live rules (trn00-trn04) and those that did not
(trn05-trn09 and the call); and read speech for comparison (the radio address's
first 60 s; the LJSpeech reading, which has human transcripts). Random sampling in
Whisper's temperature fallback is seeded, so a run repeats.

    python benchmarks/realtime_words.py [--output .benchmarks/realtime-words.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import LONG_AUDIO, MODEL_CACHE, normalize, word_error_rate  # noqa: E402
from tests.support.live import completed, finals, ljspeech_reading, stream, turn_starts  # noqa: E402
from tests.support.speakers import ami_excerpts, load, meeting  # noqa: E402

CHOSE = {f"trn0{i}" for i in range(5)}


def recordings(
    reading: np.ndarray,
) -> list[tuple[str, str, np.ndarray, list[tuple[float, float]] | None]]:
    """(name, group, 16 kHz audio, reference speech spans or None); ``reading``: the
    LJSpeech reading's audio."""
    out: list[tuple[str, str, np.ndarray, list[tuple[float, float]] | None]] = []
    for excerpt in ami_excerpts():
        group = "spontaneous, chose the rules" if excerpt.name in CHOSE else "spontaneous, held out"
        spans = [(a, b) for a, b, _ in excerpt.reference]
        out.append((excerpt.name, group, excerpt.samples, spans))
    call = meeting()
    spans = [(a, b) for a, b, _ in call.reference]
    out.append(("telephone", "spontaneous, held out", call.samples, spans))
    out.append(("radio_60s", "read", load(LONG_AUDIO)[: 60 * 16_000], None))
    out.append(("ljspeech_reading", "read", reading, None))
    return out


def pooled(references: list[str], hypotheses: list[str]) -> float | None:
    """Word errors over reference words, all recordings together (recordings whose
    reference is empty left out)."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h or "<empty>") for r, h in pairs if r.strip()]
    if not pairs:
        return None
    return round(jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs]).wer, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path,
                        default=REPO / ".benchmarks" / "realtime-words.json")  # fmt: skip
    args = parser.parse_args()
    os.environ["APP_ENV"] = "production"
    import ctranslate2

    from whisper_service.config import load_settings
    from whisper_service.engines import TranscribeOptions
    from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
    from whisper_service.models import ModelFormat, resolve_model
    from whisper_service.serving.startup import load_engine, resolve_configured_model

    settings = load_settings()
    engine = load_engine(settings, resolve_configured_model(settings))
    artifact = resolve_model("base", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    base = FasterWhisperEngine(artifact, device="cpu", compute_type="float32", threads=2, workers=1)
    options = TranscribeOptions(language="en", beam_size=settings.default_beam_size)
    rows: list[dict[str, Any]] = []
    reading, lj_reference = ljspeech_reading()
    for name, group, audio, speech in recordings(reading):
        ctranslate2.set_random_seed(1)
        whole = engine.transcribe(audio, options).text
        ctranslate2.set_random_seed(1)
        silver = base.transcribe(audio, options).text
        ctranslate2.set_random_seed(1)
        seen = asyncio.run(stream(engine, audio, settings))
        texts = finals(seen)
        live = " ".join(texts)
        unspoken = None
        if speech is not None:  # turns with text whose first second nobody spoke in
            starts = turn_starts(seen)
            unspoken = sum(1 for item, text in completed(seen).items()
                           if text.strip() and item in starts
                           and not any(a <= starts[item] + 1.0 and starts[item] <= b
                                       for a, b in speech))  # fmt: skip
        rows.append({"recording": name, "group": group, "turns": len(texts),
                     "turns_with_text_and_no_speech": unspoken,
                     "apart": round(word_error_rate(whole, live), 4) if whole.strip() else None,
                     "transcribe": whole, "finals": texts, "silver": silver})  # fmt: skip
    groups: dict[str, Any] = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        groups[group] = {
            "recordings": [r["recording"] for r in mine],
            "apart_from_transcribe": pooled([r["transcribe"] for r in mine],
                                            [" ".join(r["finals"]) for r in mine]),
            "silver_wer_transcribe": pooled([r["silver"] for r in mine],
                                            [r["transcribe"] for r in mine]),
            "silver_wer_finals": pooled([r["silver"] for r in mine],
                                        [" ".join(r["finals"]) for r in mine]),
        }  # fmt: skip
    lj = next(r for r in rows if r["recording"] == "ljspeech_reading")
    human = {"transcribe": round(word_error_rate(lj_reference, lj["transcribe"]), 4),
             "finals": round(word_error_rate(lj_reference, " ".join(lj["finals"])), 4)}  # fmt: skip
    write_report(args.output, {"groups": groups, "ljspeech_human_wer": human, "recordings": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
