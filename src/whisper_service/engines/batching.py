"""Cross-request batching at the model's own calls.

Each request decodes on its own thread with the engine's ordinary algorithm (windows,
seeks, prompts from the previous window, temperature fallback): what changes is only
that its decoder calls into the CTranslate2 model (``generate``, ``detect_language``)
are gathered with the calls other requests make at the same moment and run as one
batched call. So a request's words are those it would get
alone (the same decoder inputs; only the arithmetic of a larger matrix product
differs), and a long recording's windows join batches with short requests' windows.

Only the decoder's calls are gathered. ``encode`` runs one request's call at a time,
at once and ahead of waiting decoder calls: on the CPU a batched encoder pass costs
as much per window as single ones (the encoder's 1,500 frames already fill the
matrix products), so waiting for company there would only delay the decoder batch
it feeds.

A batch holds calls of one method with identical options (beam size, temperature,
...); a temperature fallback's re-decode batches with other re-decodes at that
temperature, or runs alone. A batch starts when it is full (``max_size`` windows),
when every request inside the engine is already waiting on a decoder call (nobody
else can join: a lone request never waits), or when its oldest call has waited
``max_wait`` seconds; at most ``concurrency`` calls run at once (the model's
replicas), and calls arriving meanwhile gather for the next one.

Requests share a batch fairly: a long request's regions (engines/regions.py) are one
request with several calls at once, sharing its cancel token. A batch takes one call
of each request in turn, the oldest request first, before a second call of any; and
a request's encoder calls go ahead of other requests' waiting decoder calls one at a
time, a decoder batch between two of them. Alone, a long request fills the batch;
among short ones, it takes its turn.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ctranslate2
import numpy as np

from whisper_service.engines.base import Cancelled, CancelToken

# How often a call waiting for a batch looks at its request's cancel token.
CANCEL_POLL_SECONDS = 0.05
# Calls run as they come, one at a time, never gathered (see the module's docstring).
UNGATHERED = frozenset({"encode"})


# How a batch is reported (the service passes its metrics in; engines import none):
# the method's label, how long each of its calls waited, and its windows.
BatchReport = Callable[[str, list[float], int], None]


@dataclass(frozen=True)
class BatchLimits:
    """``max_size`` windows per batched call; ``max_wait`` seconds a call may wait for
    company; ``concurrency`` batched calls at once."""

    max_size: int
    max_wait: float
    concurrency: int


@dataclass(eq=False)
class _Call:
    method: str
    key: tuple[Any, ...]
    features: np.ndarray  # [n, ...]: this call's windows
    prompts: list[Any] | None
    kwargs: dict[str, Any]
    token: CancelToken | None
    arrived: float = field(default_factory=time.monotonic)
    results: list[Any] | None = None
    error: BaseException | None = None
    done: bool = False

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    @property
    def group(self) -> object:
        """The request it belongs to: its cancel token (a call without one is its own)."""
        return self if self.token is None else self.token


class Gatherer:
    """Collects model calls from request threads and runs them in batches."""

    def __init__(self, model: Any, limits: BatchLimits, report: BatchReport | None = None) -> None:
        self.model = model
        self.limits = limits
        self._report = report
        self._cond = threading.Condition()
        self._members = 0  # request threads inside the engine now
        self._pending: list[_Call] = []
        self._executing = 0  # batches running
        self._executing_members = 0  # gathered calls inside those batches
        self._free_since = 0.0  # when a running batch last ended
        self._encoded_last: object = None  # whose encoder call ran since the last batch
        self._local = threading.local()

    @contextmanager
    def member(
        self, token: CancelToken | None = None, context_tokens: int | None = None
    ) -> Iterator[None]:
        """A request's time inside the engine: its calls are batched with others'.
        With ``context_tokens``, each decoder prompt keeps at most that many tokens of
        previous text (see ``BatchingWhisper.generate``)."""
        with self._cond:
            self._members += 1
        self._local.token = token
        self._local.context_tokens = context_tokens
        try:
            yield
        finally:
            self._local.token = None
            self._local.context_tokens = None
            with self._cond:
                self._members -= 1
                self._cond.notify_all()  # those left may now all be waiting

    def call(self, method: str, features: np.ndarray, prompts: list[Any] | None,
             kwargs: dict[str, Any], shape: Any = None) -> list[Any]:  # fmt: skip
        """One call's results (one per window of ``features``), run in a batch with
        calls of the same method, options and ``shape`` (what else must match)."""
        options = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
        key = (method, options, shape)
        token = getattr(self._local, "token", None)
        call = _Call(method, key, features, prompts, kwargs, token)
        with self._cond:
            self._pending.append(call)
            self._cond.notify_all()
            while not call.done:
                if token is not None and call in self._pending:
                    try:
                        token.check()  # cancelled, or past its deadline
                    except Cancelled:
                        self._pending.remove(call)
                        self._cond.notify_all()
                        raise
                batch = self._ready_batch()
                if batch is None:
                    timeout = self._wait_timeout()
                    if token is not None:  # look at the token now and then
                        timeout = (
                            CANCEL_POLL_SECONDS
                            if timeout is None
                            else min(timeout, CANCEL_POLL_SECONDS)
                        )
                    self._cond.wait(timeout)
                    continue
                self._execute(batch)
        if call.error is not None:
            raise call.error
        assert call.results is not None
        return call.results

    @property
    def context_tokens(self) -> int | None:
        """The cap on previous text this thread's member set, if any."""
        return getattr(self._local, "context_tokens", None)

    def _ready_batch(self) -> list[_Call] | None:
        """The batch to run now, taken off the queue; None if none should start yet."""
        if not self._pending or self._executing >= self.limits.concurrency:
            return None
        for call in self._pending:
            if call.method in UNGATHERED and not (
                call.group is self._encoded_last and self._others_decoding(call.group)
            ):
                self._pending.remove(call)
                self._encoded_last = call.group
                return [call]
        gathered = [c for c in self._pending if c.method not in UNGATHERED]
        if not gathered:
            return None
        oldest = gathered[0]
        batch: list[_Call] = []
        windows = 0
        for call in _in_turn([c for c in gathered if c.key == oldest.key]):
            if not batch or windows + call.size <= self.limits.max_size:
                batch.append(call)
                windows += call.size
        waiting = len(self._pending) + self._executing_members
        # Calls that waited for a busy model count their wait from when it came free:
        # the requests of the batch that just ended are a moment from their next call.
        since = max(oldest.arrived, self._free_since)
        ready = (
            windows >= self.limits.max_size
            or waiting >= self._members  # nobody else can join
            or time.monotonic() - since >= self.limits.max_wait
        )
        if not ready:
            return None
        for call in batch:
            self._pending.remove(call)
        self._encoded_last = None
        return batch

    def _others_decoding(self, group: object) -> bool:
        """Whether another request's decoder call is waiting."""
        return any(c.group is not group for c in self._pending if c.method not in UNGATHERED)

    def _wait_timeout(self) -> float | None:
        if not self._pending:
            return None
        since = max(self._pending[0].arrived, self._free_since)
        left = since + self.limits.max_wait - time.monotonic()
        return max(left, 0.0005)

    def _execute(self, batch: list[_Call]) -> None:
        """Run ``batch`` on this thread (the lock held on entry and on return)."""
        self._executing += 1
        # A member running an encoder call is about to call the decoder: not waiting.
        members = 0 if batch[0].method in UNGATHERED else len(batch)
        self._executing_members += members
        started = time.monotonic()
        self._cond.release()
        try:
            if self._report is not None:
                waits = [started - call.arrived for call in batch]
                self._report(_label(batch[0]), waits, sum(call.size for call in batch))
            try:
                results = self._run(batch)
            except BaseException as exc:  # every caller hears of it
                for call in batch:
                    call.error = exc
            else:
                for call, result in zip(batch, results, strict=True):
                    call.results = result
        finally:
            self._cond.acquire()
            self._free_since = time.monotonic()
            self._executing -= 1
            self._executing_members -= members
            for call in batch:
                call.done = True
            self._cond.notify_all()

    def _run(self, batch: list[_Call]) -> list[list[Any]]:
        first = batch[0]
        stacked = np.concatenate([c.features for c in batch]) if len(batch) > 1 else first.features
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(stacked))
        method = getattr(self.model, first.method)
        if first.method == "encode":
            # On the host, to be split between callers.
            output = np.asarray(method(features, to_cpu=True))
            return _split([output[i] for i in range(len(output))], batch)
        if first.method == "generate":
            prompts = [p for c in batch for p in (c.prompts or [])]
            return _split(list(method(features, prompts, **first.kwargs)), batch)
        return _split(list(method(features, **first.kwargs)), batch)


def _in_turn(calls: list[_Call]) -> list[_Call]:
    """``calls`` (oldest first) reordered so that each request's first call comes
    before any request's second: round by round, the oldest request first."""
    rounds: list[list[_Call]] = []
    seen: dict[int, int] = {}
    for call in calls:
        turn = seen.get(id(call.group), 0)
        seen[id(call.group)] = turn + 1
        if turn == len(rounds):
            rounds.append([])
        rounds[turn].append(call)
    return [call for calls_in_round in rounds for call in calls_in_round]


def _label(call: _Call) -> str:
    # faster-whisper samples (a temperature above 0) only to re-decode a window whose
    # text looked wrong: those batch only with each other.
    if call.method == "generate" and "sampling_temperature" in call.kwargs:
        return "generate_fallback"
    return call.method


def _split(items: Sequence[Any], batch: list[_Call]) -> list[list[Any]]:
    out, start = [], 0
    for call in batch:
        out.append(list(items[start : start + call.size]))
        start += call.size
    return out


def _prompt_shape(prompt: list[int], sot: int) -> tuple[int, int]:
    """Where <|startoftranscript|> sits in ``prompt``, and how many special tokens
    follow it (language, task, <|notimestamps|>: every special token's id is above
    it). Their values may differ (two languages batch); a forced prefix's text after
    them may differ in length."""
    start = prompt.index(sot) if sot in prompt else -1
    task = itertools.takewhile(lambda token: token > sot, prompt[start + 1 :])
    return start, sum(1 for _ in task)


def _cut_context(prompt: list[int], sot: int, keep: int) -> list[int]:
    """``prompt`` with at most ``keep`` tokens of previous text: those between
    <|startofprev|> (its first token, when there is previous text) and
    <|startoftranscript|>, the latest kept."""
    start = prompt.index(sot) if sot in prompt else 0
    if start - 1 <= keep:
        return prompt
    return [prompt[0], *prompt[start - keep :]]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class BatchingWhisper:
    """Stands in for a ``ctranslate2.models.Whisper`` inside faster-whisper: the
    batched methods go through the gatherer, everything else to the model."""

    def __init__(self, model: Any, gatherer: Gatherer, sot: int) -> None:
        self._model = model
        self._gatherer = gatherer
        self._sot = sot  # <|startoftranscript|>

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        """Encoder outputs for ``features`` [n, mels, frames], batched with others'."""
        outputs = self._gatherer.call("encode", np.asarray(features), None, {})
        return ctranslate2.StorageView.from_array(np.stack(outputs))

    def generate(self, features: Any, prompts: list[Any], **kwargs: Any) -> list[Any]:
        """Decoded token sequences, batched with other calls of the same options."""
        # CTranslate2 batches prompts only with <|startoftranscript|> at one position
        # (as many tokens of previous text before it) and as many task tokens after
        # it: a live final in context (<|notimestamps|>, then its forced prefix) and a
        # turn decoded alone (timestamps) cannot share a call. A long request's
        # regions cut their previous text to a fixed length so that their windows
        # past the first share calls (engines/faster_whisper_engine.py).
        keep = self._gatherer.context_tokens
        if keep is not None:
            prompts = [_cut_context(list(p), self._sot, keep) for p in prompts]
        shapes = {_prompt_shape(list(p), self._sot) for p in prompts}
        if kwargs.get("asynchronous") or len(shapes) != 1:
            return list(self._model.generate(features, prompts, **kwargs))
        encoded = np.asarray(features)
        # Encoder outputs of one length only stack (a fitted window is shorter).
        shape = (shapes.pop(), encoded.shape[1:])
        return self._gatherer.call("generate", encoded, list(prompts), kwargs, shape=shape)

    def detect_language(self, features: Any, **kwargs: Any) -> list[Any]:
        """Language probabilities per window, batched."""
        return self._gatherer.call("detect_language", np.asarray(features), None, kwargs)
