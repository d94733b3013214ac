"""Goodput admission's arithmetic: the backlog, the measured rate, when a request is
refused and what it is told (tests/http/test_goodput.py: over HTTP)."""

from __future__ import annotations

import time

import pytest

from whisper_service.capacity.goodput import MARGIN, PRIOR_RATE, DeadlineUnreachable, Goodput


class Clock:
    """A busy clock the test moves."""

    def __init__(self) -> None:
        self.busy = 0.0

    def __call__(self) -> float:
        return self.busy


def in_(seconds: float) -> float:
    return time.monotonic() + seconds


def test_until_measured_the_prior_rate_judges() -> None:
    goodput = Goodput(Clock(), enabled=True, jobs=False)
    assert goodput.rate == PRIOR_RATE
    fits = 100 * PRIOR_RATE / MARGIN  # audio seconds that just fit 100 s
    with goodput.claim(in_(100)) as claim:
        claim.expect(fits * 0.95)
        assert goodput.backlog_seconds == pytest.approx(fits * 0.95)
    assert goodput.backlog_seconds == 0  # given back with the block
    with goodput.claim(in_(100)) as claim, pytest.raises(DeadlineUnreachable):
        claim.expect(fits * 1.05)


def test_the_audio_ahead_counts_and_the_refusal_says_when_to_come_back() -> None:
    goodput = Goodput(Clock(), enabled=True, jobs=False)
    with goodput.claim(in_(100)) as first, goodput.claim(in_(100)) as second:
        first.expect(500)  # 500 / 10 * 1.25 = 62.5 s
        with pytest.raises(DeadlineUnreachable) as refused:
            second.expect(400)  # 900 s of audio: 112.5 s > 100 s
        error = refused.value
        assert error.status == 503
        assert error.code == "deadline_unreachable"
        # Room for 400 s once 100 s of the 500 ahead are done: about 10 s at 10/s.
        assert 9 <= int(error.headers["Retry-After"]) <= 11
        assert "500 s of audio ahead" in error.message
        assert "/jobs" not in error.message
        assert goodput.backlog_seconds == 500  # the refused one holds no place
        second.expect(250)  # 750 s of audio: 93.75 s, it fits
        assert goodput.backlog_seconds == 750


def test_a_request_too_long_alone_gets_no_retry_and_is_pointed_to_jobs() -> None:
    goodput = Goodput(Clock(), enabled=True, jobs=True)
    with goodput.claim(in_(60)) as claim, pytest.raises(DeadlineUnreachable) as refused:
        claim.expect(3600)
    assert "Retry-After" not in refused.value.headers
    assert "POST /jobs" in refused.value.message


def test_the_rate_is_audio_finished_per_busy_second() -> None:
    clock = Clock()
    goodput = Goodput(clock, enabled=True, jobs=False)
    clock.busy = 4.0
    goodput.finished(120.0)  # 30 audio seconds per busy second
    assert goodput.rate == pytest.approx(30.0)
    # Two finishing together share the busy time since the last one.
    clock.busy = 8.0
    goodput.finished(60.0)
    goodput.finished(60.0)
    assert 25 < goodput.rate < 35
    # Idle time between requests is not busy time: the rate stays.
    before = goodput.rate
    clock.busy = 9.0
    goodput.finished(30.0)
    assert goodput.rate == pytest.approx(before, rel=0.05)


def test_off_or_without_a_deadline_nothing_is_refused() -> None:
    off = Goodput(Clock(), enabled=False, jobs=False)
    with off.claim(in_(1)) as claim:
        claim.expect(10_000)
    on = Goodput(Clock(), enabled=True, jobs=False)
    with on.claim(None) as claim:
        claim.expect(10_000)
