"""The gatherer that batches model calls across requests, with a stand-in model
that records every batched call (the real model's equality of batched and lone
decoding is in tests/integration/test_batching_http.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from whisper_service.engines.base import Cancelled, CancelToken
from whisper_service.engines.batching import BatchLimits, Gatherer


class Recorder:
    """generate answers each window with its first value; keeps every batch's size."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.batches: list[tuple[str, int]] = []
        self.values: list[list[float]] = []  # each batch's windows' values
        self.hold = hold

    def encode(self, features: Any, to_cpu: bool = False) -> np.ndarray:
        values = np.asarray(features)
        self.batches.append(("encode", len(values)))
        if self.hold is not None:
            self.hold.wait(10)
        return values

    def generate(self, features: Any, prompts: list[Any], **kwargs: Any) -> list[float]:
        values = np.asarray(features)
        self.batches.append(("generate", len(values)))
        self.values.append([float(v.flat[0]) for v in values])
        if self.hold is not None:
            self.hold.wait(10)
        if kwargs.get("fail"):
            raise RuntimeError("the model failed")
        return [float(v.flat[0]) for v in values]


def window(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2, 3), value, dtype=np.float32)


def in_threads(gatherer: Gatherer, calls: list[dict[str, Any]]) -> list[Any]:
    """Each call from its own request thread, all members at once; their results."""
    results: list[Any] = [None] * len(calls)
    entered = threading.Barrier(len(calls))

    def run(index: int, call: dict[str, Any]) -> None:
        with gatherer.member(call.pop("token", None)):
            entered.wait()
            try:
                results[index] = gatherer.call("generate", prompts=[[1]] * len(call["features"]),
                                               **call)  # fmt: skip
            except Exception as exc:
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
        assert not t.is_alive(), "a call never returned"
    return results


def limits(size: int = 8, wait: float = 60.0, concurrency: int = 1) -> BatchLimits:
    return BatchLimits(max_size=size, max_wait=wait, concurrency=concurrency)


def test_a_lone_request_does_not_wait_for_company() -> None:
    model = Recorder()
    # A minute's wait allowed: were it taken, the thread would not return in time.
    [result] = in_threads(Gatherer(model, limits()), [{"features": window(7), "kwargs": {}}])
    assert result == [7.0]
    assert model.batches == [("generate", 1)]


def test_concurrent_calls_run_as_one_batch_and_each_gets_its_own_results() -> None:
    model = Recorder()
    calls = [{"features": window(i, n=1 + i % 2), "kwargs": {"beam_size": 5}} for i in range(4)]
    results = in_threads(Gatherer(model, limits()), calls)
    assert model.batches == [("generate", 6)]
    assert results == [[0.0], [1.0, 1.0], [2.0], [3.0, 3.0]]


def test_only_calls_with_the_same_options_share_a_batch() -> None:
    model = Recorder()
    calls = [{"features": window(i), "kwargs": {"sampling_temperature": 0.2 * (i % 2)}}
             for i in range(4)]  # fmt: skip
    results = in_threads(Gatherer(model, limits()), calls)
    assert sorted(model.batches) == [("generate", 2), ("generate", 2)]
    assert results == [[0.0], [1.0], [2.0], [3.0]]


def test_a_batch_holds_at_most_max_size_windows() -> None:
    model = Recorder()
    calls = [{"features": window(i), "kwargs": {}} for i in range(6)]
    in_threads(Gatherer(model, limits(size=4)), calls)
    assert sorted(n for _, n in model.batches) == [2, 4]


def test_a_member_busy_elsewhere_is_waited_for_at_most_max_wait() -> None:
    model = Recorder()
    gatherer = Gatherer(model, limits(wait=0.2))
    absent = threading.Event()

    def elsewhere() -> None:
        with gatherer.member():
            absent.wait(10)  # inside the engine, but not calling the model

    other = threading.Thread(target=elsewhere)
    other.start()
    try:
        [result] = in_threads(gatherer, [{"features": window(1), "kwargs": {}}])
    finally:
        absent.set()
        other.join()
    assert result == [1.0]
    assert model.batches == [("generate", 1)]


def test_a_cancelled_request_leaves_the_queue_and_the_batch_runs_without_it() -> None:
    release = threading.Event()
    model = Recorder(hold=release)
    gatherer = Gatherer(model, limits(concurrency=1))
    token = CancelToken()
    outcome: dict[str, Any] = {}

    def first() -> None:
        with gatherer.member():
            outcome["first"] = gatherer.call("generate", window(1), [[1]], {})

    def second() -> None:
        with gatherer.member(token):
            try:
                gatherer.call("generate", window(2), [[1]], {})
            except Cancelled as exc:
                outcome["second"] = exc

    running = threading.Thread(target=first)
    running.start()
    while not gatherer._executing:  # the first batch holds the only replica
        time.sleep(0.01)
    waiting = threading.Thread(target=second)
    waiting.start()
    time.sleep(0.1)
    token.cancel("client_disconnected")
    waiting.join(5)
    assert not waiting.is_alive()
    release.set()
    running.join(5)
    assert isinstance(outcome["second"], Cancelled)
    assert outcome["first"] == [1.0]
    assert model.batches == [("generate", 1)]


def test_a_model_error_reaches_every_caller_in_the_batch() -> None:
    model = Recorder()
    calls = [{"features": window(i), "kwargs": {"fail": True}} for i in range(3)]
    results = in_threads(Gatherer(model, limits()), calls)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert model.batches == [("generate", 3)]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_calls_arriving_while_the_replicas_are_busy_gather_for_the_next_batch(
    concurrency: int,
) -> None:
    release = threading.Event()
    model = Recorder(hold=release)
    gatherer = Gatherer(model, limits(concurrency=concurrency))
    done: list[Any] = []

    def one(value: float) -> None:
        with gatherer.member():
            done.append(gatherer.call("generate", window(value), [[1]], {}))

    busy = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    for t in busy:
        t.start()
        while gatherer._executing < busy.index(t) + 1:
            time.sleep(0.01)
    later = [threading.Thread(target=one, args=(10 + i,)) for i in range(5)]
    for t in later:
        t.start()
    while len(gatherer._pending) < 5:
        time.sleep(0.01)
    release.set()
    for t in busy + later:
        t.join(5)
    assert len(done) == concurrency + 5
    assert model.batches[-1] == ("generate", 5)


def test_encoder_calls_never_wait_for_company_and_go_before_waiting_decoder_calls() -> None:
    release = threading.Event()
    model = Recorder(hold=release)
    # A minute's wait allowed: a gathered encode would not return in time.
    gatherer = Gatherer(model, limits(concurrency=1))
    done: list[tuple[str, Any]] = []

    def running() -> None:
        with gatherer.member():
            done.append(("generate", gatherer.call("generate", window(1), [[1]], {})))

    def decoding(value: float) -> None:
        with gatherer.member():
            done.append(("generate", gatherer.call("generate", window(value), [[1]], {})))

    def encoding(value: float) -> None:
        with gatherer.member():
            done.append(("encode", gatherer.call("encode", window(value), None, {})))

    first = threading.Thread(target=running)
    first.start()
    while not gatherer._executing:  # the only replica is busy
        time.sleep(0.01)
    waiting = [threading.Thread(target=decoding, args=(2,))]
    waiting += [threading.Thread(target=encoding, args=(10 + i,)) for i in range(2)]
    for t in waiting:
        t.start()
    while len(gatherer._pending) < 3:
        time.sleep(0.01)
    release.set()
    for t in [first, *waiting]:
        t.join(5)
        assert not t.is_alive(), "a call never returned"
    # Each encode alone, both before the decoder call that waited longer.
    assert model.batches == [("generate", 1), ("encode", 1), ("encode", 1), ("generate", 1)]
    assert sorted(float(np.asarray(r[0]).flat[0]) for kind, r in done if kind == "encode") == [
        10.0,
        11.0,
    ]


def queued_behind_a_running_batch(
    gatherer: Gatherer, calls: list[tuple[str, float, CancelToken | None]]
) -> None:
    """One call holds the only replica while ``calls`` (method, value, the request's
    token) queue up in this order, each from its own member thread; then the model is
    released and every thread joined."""
    release = gatherer.model.hold
    threads: list[threading.Thread] = []

    def one(method: str, value: float, token: CancelToken | None) -> None:
        with gatherer.member(token):
            gatherer.call(method, window(value), None if method == "encode" else [[1]], {})

    first = threading.Thread(target=one, args=("generate", 0.0, None))
    first.start()
    while not gatherer._executing:
        time.sleep(0.01)
    for index, call in enumerate(calls):
        threads.append(threading.Thread(target=one, args=call))
        threads[-1].start()
        while len(gatherer._pending) < index + 1:  # queued in this order
            time.sleep(0.01)
    release.set()
    for t in [first, *threads]:
        t.join(10)
        assert not t.is_alive(), "a call never returned"


def test_a_request_with_many_calls_takes_its_turn_in_a_batch() -> None:
    # A long request's four regions queue first, then three short requests: the
    # batch of four takes one region and the three short ones; the other regions
    # follow in the next batch.
    model = Recorder(hold=threading.Event())
    gatherer = Gatherer(model, limits(size=4, wait=0.5))
    regions = CancelToken()
    queued_behind_a_running_batch(
        gatherer,
        [("generate", 10.0 + i, regions) for i in range(4)]
        + [("generate", 1.0 + i, None) for i in range(3)],
    )
    assert model.values[1:] == [[10.0, 1.0, 2.0, 3.0], [11.0, 12.0, 13.0]]


def test_a_requests_encoder_calls_let_other_requests_decode_between_them() -> None:
    model = Recorder(hold=threading.Event())
    gatherer = Gatherer(model, limits(wait=0.5))
    regions = CancelToken()
    queued_behind_a_running_batch(
        gatherer, [("encode", 10.0, regions), ("encode", 11.0, regions), ("generate", 1.0, None)]
    )
    assert model.batches[1:] == [("encode", 1), ("generate", 1), ("encode", 1)]
    # Alone, a request's encoder calls run back to back (nobody else is decoding).
    model = Recorder(hold=threading.Event())
    gatherer = Gatherer(model, limits(wait=0.5))
    queued_behind_a_running_batch(
        gatherer, [("encode", 10.0, regions), ("encode", 11.0, regions), ("generate", 1.0, regions)]
    )
    assert model.batches[1:] == [("encode", 1), ("encode", 1), ("generate", 1)]
