"""Goodput admission: a request is admitted only if it can finish before its deadline.

Under overload, sharing the model between every admitted request lets them all slow
down together until they all miss the deadline (eight 30-minute uploads: six ran for
five minutes and all six ended in 504). Instead, each request states its audio's
length before it runs: from the file's header (before a byte is decoded, so the
refusal comes at once), then exactly once decoded. The instance knows how much audio
is admitted ahead of it (the backlog: requests decoding, queued or running) and its
own speed, measured as audio seconds finished per second of busy time (any inference
running), so the time the backlog and the request need together is an estimate. When
that, with a margin, passes the request's deadline, it is refused with 503
``deadline_unreachable``, a Retry-After for when the backlog will have drained enough
(none when the request alone is too long), and, where jobs are served, a pointer to
``POST /jobs``.

The estimate is cautious: a running request counts all its audio until it finishes,
and live sessions and jobs use busy time without adding finished requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from whisper_service.errors import ServiceError

# Audio seconds per busy second assumed until a request has finished: tiny.en on two
# CPUs does 15-40 (docs/benchmarks.md); a larger model does fewer, so the first
# requests of a fresh instance are judged cautiously, then by what it measured.
PRIOR_RATE = 10.0
# Estimates are taken this much longer: the rate moves with the mix of work.
MARGIN = 1.25
# Each finished request's sample weighs this much against the history.
DECAY = 0.7


class DeadlineUnreachable(ServiceError):
    """The request could not finish before its deadline at the current load."""

    status = 503
    code = "deadline_unreachable"


class Goodput:
    """The backlog of admitted audio and the measured rate (thread-safe: audio headers
    are read on threads)."""

    def __init__(self, busy_seconds: Callable[[], float], *, enabled: bool, jobs: bool) -> None:
        self._busy_seconds = busy_seconds
        self.enabled = enabled
        self._jobs = jobs
        self._claims: dict[int, float] = {}
        self._lock = threading.Lock()
        self._audio = 0.0  # decayed sums of finished audio and of busy time
        self._busy = 0.0
        self._busy_at_last = busy_seconds()
        self.measured = False

    @property
    def rate(self) -> float:
        """Audio seconds the instance finishes per busy second."""
        return self._audio / self._busy if self.measured else PRIOR_RATE

    @property
    def backlog_seconds(self) -> float:
        """Audio seconds admitted and not finished."""
        with self._lock:
            return sum(self._claims.values())

    @contextmanager
    def claim(self, deadline: float | None) -> Iterator[Claim]:
        """A request's place in the backlog until the block ends."""
        claim = Claim(self, deadline)
        try:
            yield claim
        finally:
            with self._lock:
                self._claims.pop(id(claim), None)

    def finished(self, audio_seconds: float) -> None:
        """A request's inference finished: fold its audio into the rate."""
        busy = self._busy_seconds()
        with self._lock:
            self._audio = DECAY * self._audio + audio_seconds
            self._busy = DECAY * self._busy + max(busy - self._busy_at_last, 0.0)
            self._busy_at_last = busy
            # A request answered from no busy time (a cache, a failure) says nothing.
            self.measured = self.measured or self._busy > 0

    def _expect(self, claim: Claim, seconds: float) -> None:
        if not self.enabled or claim.deadline is None:
            return
        with self._lock:
            ahead = sum(v for k, v in self._claims.items() if k != id(claim))
            rate = self.rate
            left = claim.deadline - time.monotonic()
            needed = (ahead + seconds) / rate * MARGIN
            if needed <= left:
                self._claims[id(claim)] = seconds
                return
        raise self._refusal(seconds, ahead, rate, left)

    def _refusal(self, seconds: float, ahead: float, rate: float, left: float) -> ServiceError:
        alone = seconds / rate * MARGIN
        jobs = " or submit it as a job (POST /jobs)" if self._jobs else ""
        if alone > left:
            return DeadlineUnreachable(
                f"{seconds:.0f} s of audio would take about {alone:.0f} s here, longer "
                f"than the request may run ({left:.0f} s left); split it{jobs}"
            )
        # When enough of the backlog has drained for this request to fit.
        wait = ahead - (left / MARGIN * rate - seconds)
        retry = max(1, math.ceil(wait / rate))
        return DeadlineUnreachable(
            f"the instance has {ahead:.0f} s of audio ahead of this request's "
            f"{seconds:.0f} s and would not finish it within the request's deadline; "
            f"retry in {retry} s{jobs}",
            headers={"Retry-After": str(retry)},
        )


class Claim:
    """One request's audio in the backlog; ``expect`` raises DeadlineUnreachable."""

    def __init__(self, goodput: Goodput, deadline: float | None) -> None:
        self._goodput = goodput
        self.deadline = deadline
        self.seconds = 0.0  # the latest length stated

    def expect(self, seconds: float) -> None:
        """The request's audio is ``seconds`` long (its header's word, or decoded):
        keep its place in the backlog, or refuse it."""
        self.seconds = seconds
        self._goodput._expect(self, seconds)
