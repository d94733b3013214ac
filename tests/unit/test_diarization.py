"""Speaker diarization on real speech: the encoder, the clustering and the turns
(DESIGN: a test that claims diarization works uses real voices), and the pure parts
(attribution, scoring) on made-up transcripts."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.support import MODEL_CACHE
from tests.support.speakers import (
    LJ,
    Labelled,
    ami_excerpts,
    bush,
    diarization_error_rate,
    error_seconds,
    load,
    meeting,
    three_speakers,
    two_speakers,
)
from whisper_service.audio import SAMPLE_RATE
from whisper_service.diarization import (
    DiarizeOptions,
    SpeakerWindows,
    Turn,
    attribute,
    diarize,
    embed_speech,
    label_turns,
    voice_embedding,
)
from whisper_service.diarization.attribution import relabel, speaker_of, without_unspoken
from whisper_service.diarization.clustering import MAX_AFFINITY_WINDOWS, cluster
from whisper_service.diarization.speakers import KnownSpeaker, embed_windows, letters, warm_up
from whisper_service.engines.base import Segment, Transcription, Word


@pytest.fixture(scope="module", autouse=True)
def _encoder_from_the_test_cache() -> None:
    """The encoder's ONNX graph is exported (once) into the suite's model cache."""
    warm_up(MODEL_CACHE)


# The goals: clean concatenations of different voices at most 10 % with the
# speaker count right; the real meeting excerpt (overlapping speech, which one label
# per moment must miss) at most 30 %.
CLEAN_MAX_DER = 0.10
# With a 0.25 s collar (as issue 24 scored them): measured 0.1 % on both.
CLEAN_MAX_DER_COLLAR = 0.02
MEETING_MAX_DER = 0.30
# The ten AMI excerpts with 10 s of reference speech or more (8 of them), pooled:
# measured 19.1 % with overlapped speech not scored and the count within one on 7 of
# 8 (docs/benchmarks.md; trn00-trn04 chose the settings, trn05-trn09 did not). The
# code before this bound scored 26.4 % and 3 of 8.
AMI_MIN_SPEECH_SECONDS = 10.0
AMI_MAX_DER_SKIP_OVERLAP = 0.22
AMI_MIN_COUNTS_WITHIN_ONE = 6


@cache
def case(name: str) -> Labelled:
    return {"two": two_speakers, "three": three_speakers, "meeting": meeting}[name]()


def hypothesis(turns: list[Turn]) -> list[tuple[float, float, str]]:
    return [(t.start, t.end, t.speaker) for t in turns]


@pytest.mark.parametrize(("name", "max_der"), [("two", CLEAN_MAX_DER), ("three", CLEAN_MAX_DER),
                                               ("meeting", MEETING_MAX_DER)])  # fmt: skip
def test_speakers_are_found_and_told_apart(name: str, max_der: float) -> None:
    labelled = case(name)
    turns = diarize(labelled.samples, DiarizeOptions())
    assert len({t.speaker for t in turns}) == labelled.speakers
    assert diarization_error_rate(labelled.reference, hypothesis(turns)) <= max_der
    if name != "meeting":  # the clean mixes' error is all at speech edges
        collared = diarization_error_rate(labelled.reference, hypothesis(turns), collar=0.25)
        assert collared <= CLEAN_MAX_DER_COLLAR


def test_meetings_pooled_error_and_speaker_counts() -> None:
    scored = [c for c in ami_excerpts() if c.speech_seconds >= AMI_MIN_SPEECH_SECONDS]
    assert len(scored) == 8
    pooled = np.zeros(4)
    within_one = 0
    for excerpt in scored:
        found = hypothesis(diarize(excerpt.samples, DiarizeOptions()))
        pooled += error_seconds(excerpt.reference, found, skip_overlap=True)
        within_one += abs(len({s for *_, s in found}) - excerpt.speakers) <= 1
    der = pooled[:3].sum() / pooled[3]
    print(f"\nAMI pooled DER (overlap not scored) {der:.3f}, count within one {within_one}/8")
    assert der <= AMI_MAX_DER_SKIP_OVERLAP
    assert within_one >= AMI_MIN_COUNTS_WITHIN_ONE


def test_one_voice_is_one_speaker() -> None:
    turns = diarize(bush(40, 60), DiarizeOptions())
    assert turns
    assert {t.speaker for t in turns} == {"A"}


def test_silence_and_noise_have_no_speakers() -> None:
    silence = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    noise = np.random.default_rng(0).normal(0, 1e-3, 5 * SAMPLE_RATE).astype(np.float32)
    assert diarize(silence, DiarizeOptions()) == []
    assert diarize(noise, DiarizeOptions()) == []


def test_the_bounds_hold() -> None:
    three = case("three")
    one = diarize(three.samples, DiarizeOptions(max_speakers=1))
    assert {t.speaker for t in one} == {"A"}
    two = case("two")
    forced = diarize(two.samples, DiarizeOptions(min_speakers=3))
    assert len({t.speaker for t in forced}) == 3


def test_labels_follow_first_appearance() -> None:
    turns = diarize(case("three").samples, DiarizeOptions())
    seen = list(dict.fromkeys(t.speaker for t in turns))
    assert seen == letters(len(seen))


def test_known_voices_get_their_names() -> None:
    three = case("three")
    found = embed_speech(three.samples)
    lj = voice_embedding(load("en/ljspeech_LJ001-0004.wav"))  # not in the concatenation
    president = voice_embedding(bush(100, 8))
    assert lj is not None
    assert president is not None
    known = [KnownSpeaker("reader", lj), KnownSpeaker("president", president)]
    turns = label_turns(found, DiarizeOptions(), known)
    names = {t.speaker for t in turns}
    assert {"reader", "president"} <= names
    assert len(names) == 3  # Kennedy, unknown, keeps a letter
    named = [(a, b, s) for a, b, s in hypothesis(turns)]
    renamed = [(a, b, {"lj": "reader", "bush": "president"}.get(s, s))
               for a, b, s in three.reference]  # fmt: skip
    assert diarization_error_rate(renamed, named) <= CLEAN_MAX_DER


def test_units_embedded_apart_cluster_as_one_recording() -> None:
    """What a job does: each unit embeds its own audio; the merge clusters them all."""
    three = case("three")
    cut = int(37 * SAMPLE_RATE)
    found = embed_speech(three.samples[:cut])
    found.extend(embed_speech(three.samples[cut:], offset=cut / SAMPLE_RATE))
    turns = label_turns(found, DiarizeOptions())
    assert len({t.speaker for t in turns}) == 3
    assert diarization_error_rate(three.reference, hypothesis(turns)) <= CLEAN_MAX_DER


def test_many_windows_are_grouped_before_clustering() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 256))
    points = np.concatenate([c + 0.3 * rng.normal(size=(600, 256)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert len(points) > MAX_AFFINITY_WINDOWS
    labels = cluster(points.astype(np.float32), 1, 8)
    assert len(set(labels)) == 3
    for block in range(3):  # each true speaker's windows share one label
        assert len(set(labels[block * 600 : (block + 1) * 600])) == 1


def test_the_encoder_hears_one_voice_as_one_and_two_as_two() -> None:
    """The weights, the features (Kaldi filterbanks, each window's mean removed) and
    the network together: a wrong piece leaves every voice alike or none."""
    from whisper_service.diarization.encoder import speaker_encoder

    clips = [load(LJ.format("0001")), load(LJ.format("0003")), load("jfk.flac")]
    audio = np.concatenate(clips)
    bounds = np.cumsum([0] + [len(c) / SAMPLE_RATE for c in clips])
    windows = [(float(a), float(b)) for a, b in itertools.pairwise(bounds)]
    reader, reader_again, president = speaker_encoder().embed(audio, windows)
    assert reader @ reader_again > 0.8
    assert reader @ president < 0.3
    assert abs(float(np.linalg.norm(president)) - 1) < 1e-5


def test_without_torch_a_missing_graph_says_where_it_should_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from whisper_service.diarization.encoder import onnx_model

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "torch" else find_spec(name)
    )
    with pytest.raises(RuntimeError, match="no torch to export it: the lean image"):
        onnx_model(tmp_path)
    assert onnx_model(MODEL_CACHE).is_file()  # an exported graph needs no torch


def test_the_onnx_graph_computes_what_the_torch_network_does() -> None:
    """The exported graph against CAM++ in torch with the same weights, at the shortest
    window, the usual one, and lengths past the network's 100-frame context segments."""
    import torch

    from whisper_service.diarization.campplus import CAMPPlus
    from whisper_service.diarization.encoder import onnx_model, speaker_encoder, weights_path

    network = CAMPPlus()
    network.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    network.eval()
    session = speaker_encoder()._session
    assert onnx_model(MODEL_CACHE).is_file()
    rng = np.random.default_rng(3)
    for windows, frames in [(1, 18), (3, 148), (2, 401)]:
        features = rng.normal(size=(windows, frames, 80)).astype(np.float32)
        with torch.no_grad():
            expected = network(torch.from_numpy(features)).numpy()
        found = session.run(None, {"features": features})[0]
        assert np.abs(found - expected).max() < 1e-4 * np.abs(expected).max()


def test_a_window_between_two_of_one_voice_is_not_embedded() -> None:
    """One region, the reader for 4.5 s, then President Kennedy: the reader's second
    window lies between two of the reader and takes their mean; the window after the
    change lies between the two voices and is embedded."""
    from whisper_service.diarization.encoder import speaker_encoder

    reader, president = load(LJ.format("0001")), load("jfk.flac")
    audio = np.concatenate([reader[: int(4.5 * SAMPLE_RATE)], president[8000:56000]])
    windows = [(start, start + 1.5) for start in (0.0, 1.5, 3.0, 4.5, 6.0)]
    found = embed_windows(audio, windows, [0] * len(windows))
    own = speaker_encoder().embed(audio, windows)
    for index in (0, 2, 3, 4):
        assert np.allclose(found[index], own[index], atol=1e-5)
    mean = (own[0] + own[2]) / np.linalg.norm(own[0] + own[2])
    assert np.allclose(found[1], mean, atol=1e-5)
    assert not np.allclose(found[1], own[1], atol=1e-2)
    assert own[2] @ own[4] < 0.5  # the voices differ, so window 3 had to be embedded


@pytest.mark.parametrize("seconds", [0.0, 0.01, 0.19, 0.2, 1.5])
def test_any_window_length_gives_a_finite_embedding(seconds: float) -> None:
    from whisper_service.diarization.encoder import speaker_encoder

    audio = load(LJ.format("0001"))
    found = speaker_encoder().embed(audio, [(1.0, 1.0 + seconds)])
    assert found.shape == (1, 192)
    assert np.isfinite(found).all()


def test_short_windows_join_a_speaker_instead_of_founding_one() -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(2, 192))
    points = np.concatenate([c + 0.3 * rng.normal(size=(20, 192)) for c in centres])
    stray = rng.normal(size=(1, 192))  # a short, noisy window: like no one
    points = np.concatenate([points, stray, centres[1:] + 0.3 * rng.normal(size=(1, 192))])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    seconds = np.array([1.5] * 40 + [0.4, 0.4])
    assert len(set(cluster(points, 1, 8))) == 3  # alone, the stray is a speaker
    labels = cluster(points, 1, 8, seconds)
    assert len(set(labels)) == 2
    assert labels[41] == labels[20]  # the short window like speaker two joins it


def segment(
    start: float, end: float, words: list[tuple[float, float, str]] | None, logprob: float = -0.2
) -> Segment:
    return Segment(
        id=0, seek=0, start=start, end=end,
        text="".join(w for *_, w in words) if words else " hello there",
        tokens=[1, 2], temperature=0.0, avg_logprob=logprob, compression_ratio=1.2,
        no_speech_prob=0.01,
        words=[Word(a, b, w, 0.9) for a, b, w in words] if words else None,
    )  # fmt: skip


def transcript(*segments: Segment) -> Transcription:
    return Transcription("", "en", 1.0, 10.0, list(segments))


def test_a_segment_is_split_where_the_speaker_changes() -> None:
    turns = [Turn(0.0, 2.0, "X"), Turn(2.0, 4.0, "Y")]
    words = [(0.0, 0.5, " Are"), (0.5, 1.0, " you"), (1.0, 1.8, " there?"),
             (2.1, 2.6, " Yes,"), (2.6, 3.5, " here.")]  # fmt: skip
    result = attribute(transcript(segment(0.0, 3.5, words)), turns)
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in result.segments] == [
        (0, "X", " Are you there?", 0.0, 1.8),
        (1, "Y", " Yes, here.", 2.1, 3.5),
    ]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words or [])
    assert result.segments[0].tokens == []  # Whisper's tokens belong to the whole segment


def test_without_words_a_segment_goes_to_who_speaks_most() -> None:
    turns = [Turn(0.0, 1.0, "X"), Turn(1.0, 4.0, "Y")]
    result = attribute(transcript(segment(0.5, 3.0, None)), turns)
    assert [s.speaker for s in result.segments] == ["Y"]
    assert result.segments[0].tokens == [1, 2]


def test_a_word_in_a_pause_goes_to_the_nearest_turn() -> None:
    turns = [Turn(0.0, 1.0, "X"), Turn(5.0, 6.0, "Y")]
    assert speaker_of(turns, 1.2, 1.4) == "X"
    assert speaker_of(turns, 4.5, 4.8) == "Y"
    assert speaker_of([], 0, 1) is None


def test_relabelling_orders_by_first_word_and_keeps_known_names() -> None:
    turns = [Turn(0.0, 1.0, "B"), Turn(1.0, 2.0, "ann"), Turn(2.0, 3.0, "A")]
    result = attribute(
        transcript(segment(0.0, 1.0, None), segment(1.0, 2.0, None), segment(2.0, 3.0, None)),
        turns,
    )
    renamed = relabel(result, letters(4), {"ann"})
    assert [s.speaker for s in renamed.segments] == ["A", "ann", "B"]


def test_text_nobody_spoke_is_taken_out() -> None:
    """A failed decode where VAD heard nobody goes; a failed decode over speech, or a
    confident one VAD missed (quiet speech), stays."""
    turns = [Turn(0.0, 2.0, "X")]
    spoken = segment(0.0, 2.0, None, logprob=-1.3)
    invented = segment(5.0, 8.0, None, logprob=-1.3)
    quiet = segment(9.0, 10.0, None, logprob=-0.5)
    result = without_unspoken(transcript(spoken, invented, quiet), turns)
    assert result.segments == [spoken, quiet]
    assert result.text == "hello there hello there"


def test_every_segment_of_a_diarized_answer_has_a_speaker() -> None:
    """Speech VAD never heard (here: none at all) is still speaker A's, so a caller
    can tell diarization ran."""
    from whisper_service.audio import DecodedAudio
    from whisper_service.diarization.transcripts import with_speakers
    from whisper_service.engines.base import CancelToken

    silence = DecodedAudio(np.zeros(10 * SAMPLE_RATE, dtype=np.float32), "wav", "pcm", 1, 16000)
    heard = transcript(segment(1.0, 3.0, [(1.0, 2.0, " Quiet"), (2.0, 3.0, " words.")]),
                       segment(4.0, 6.0, None, logprob=-1.5))  # fmt: skip
    result = with_speakers(heard, silence, DiarizeOptions(), CancelToken(), keep_words=True)
    assert [(s.text, s.speaker) for s in result.segments] == [(" Quiet words.", "A")]
    assert {w.speaker for w in result.segments[0].words or []} == {"A"}


def test_the_error_rate_scores_as_pyannote_does() -> None:
    """The figures pyannote.metrics gives for the same turns (checked by hand)."""
    reference = [(0.0, 4.0, "a"), (4.0, 8.0, "b"), (6.0, 7.0, "a")]  # overlap at 6-7 s
    assert diarization_error_rate(reference, [(0.0, 4.0, "x"), (4.0, 8.0, "y")]) == (
        pytest.approx(1 / 9, abs=0.01)  # the overlapped second of "a" is missed
    )
    # One label throughout: "x" is "a" (5 s in common); "b"'s 4 s minus the second
    # overlapped are confused (3), the overlapped second is missed (1).
    assert diarization_error_rate(reference, [(0.0, 8.0, "x")]) == pytest.approx(4 / 9, abs=0.01)
    assert diarization_error_rate([(0.0, 1.0, "a")], []) == 1.0
    assert diarization_error_rate([], []) == 0.0
    # The overlapped second not scored: 7 s left, "b"'s 3 of them confused.
    assert diarization_error_rate(reference, [(0.0, 8.0, "x")], skip_overlap=True) == (
        pytest.approx(3 / 7, abs=0.01)
    )
    # A 0.25 s collar on each side of each reference boundary forgives the 0.2 s of
    # speech found past the end of the turn, and the 0.5 s around it are not counted.
    late = [(0.0, 2.0, "a")]
    assert diarization_error_rate(late, [(0.0, 2.2, "x")]) == pytest.approx(0.1, abs=0.01)
    assert diarization_error_rate(late, [(0.0, 2.2, "x")], collar=0.25) == 0.0
    assert diarization_error_rate(late, [(0.0, 1.0, "x")], collar=0.25) == (
        pytest.approx(0.75 / 1.5, abs=0.01)  # 0.25-1.75 s scored, 0.75 s of it missed
    )


def test_unit_speakers_survive_storage(tmp_path: object) -> None:
    from pathlib import Path

    from whisper_service.jobs.files import JobFiles
    from whisper_service.jobs.objects import LocalObjects

    files = JobFiles(LocalObjects(Path(str(tmp_path))))
    found = SpeakerWindows([(1.0, 2.5), (1.75, 3.25)], [0, 0],
                           np.eye(2, 256, dtype=np.float32))  # fmt: skip
    files.put_unit_speakers("job_1", 0, found)
    back = files.get_unit_speakers("job_1", 0)
    assert back is not None
    assert back.windows == found.windows
    assert back.regions == found.regions
    assert np.array_equal(back.embeddings, found.embeddings)
    assert files.get_unit_speakers("job_1", 1) is None
