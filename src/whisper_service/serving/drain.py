"""The graceful drain, on SIGTERM or SIGINT (Cloud Run sends SIGTERM and SIGKILLs 10 s
later):

1. at once: ``draining`` is set; readiness answers 503; new requests get 503 with
   ``Retry-After`` and ``Connection: close``; the scheduler admits nothing new;
   job deliveries (Pub/Sub pushes included) are refused, so the queue redelivers them;
2. in-flight and queued requests run on, for at most ``drain_timeout_seconds``; job
   units in progress stop at the end of their batch and are given back to the queue;
3. past that, whatever remains is cancelled through its CancelToken, answers a 503
   ``shutting_down`` and is logged; job units still running are given back from
   their last checkpoint;
4. then the server is told to exit: it closes the listener and its connections and
   the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from whisper_service.observability import metrics
from whisper_service.serving.runtime import Runtime

log = structlog.get_logger(__name__)

# After cancelling leftovers, how long to let them write their 503 before exiting.
CANCEL_ANSWER_SECONDS = 1.0

SignalHandler = Callable[[int, FrameType | None], Any]


class Drainer:
    """Turns SIGTERM/SIGINT into the drain described in this module's docstring.

    Installed over the server's own handlers (uvicorn's), which it calls, or whose
    server it tells to exit, once the drain is over.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._previous: dict[int, SignalHandler] = {}
        self._replaced: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Chain onto SIGTERM and SIGINT; call from the event loop's (main) thread."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            # Embedded in a test client or another host's thread: signals are not ours.
            log.warning("drain_handler_not_installed", reason="not the main thread")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            self._replaced[sig] = previous
            if callable(previous):
                self._previous[sig] = previous
            signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        """Put back the handlers install() replaced (the app is stopping, but the
        process, a test runner say, may go on)."""
        for sig, previous in self._replaced.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._replaced.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.runtime.draining:
            # A second signal: the server's own handling (SIGINT twice forces exit).
            previous = self._previous.get(sig)
            if previous is not None:
                previous(sig, frame)
            return
        self.runtime.draining = True
        metrics.DRAINING.set(1)
        # Requests already accepted (even if still uploading or decoding) are in flight
        # and may finish; DrainMiddleware refuses only the ones that arrive from now on.
        self.runtime.drain_started_monotonic = time.monotonic()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._start, sig, frame)

    def _start(self, sig: int, frame: FrameType | None) -> None:
        self._task = asyncio.create_task(self.drain(sig, frame))

    async def drain(self, sig: int, frame: FrameType | None) -> None:
        """Wait for in-flight work, cancel what outlives the timeout, then exit."""
        runtime, timeout = self.runtime, self.runtime.settings.drain_timeout_seconds
        started = runtime.drain_started_monotonic or time.monotonic()
        log.info(
            "drain_started",
            signal=signal.Signals(sig).name,
            in_flight=len(runtime.in_flight),
            drain_timeout_seconds=timeout,
        )
        jobs = runtime.jobs
        if jobs is not None:
            await jobs.begin_drain()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, started + timeout - time.monotonic())):
                await runtime.in_flight.wait_idle()
                if jobs is not None:
                    await jobs.wait_idle()
        if jobs is not None:
            await jobs.stop_all()
        leftovers = runtime.in_flight.snapshot()
        if leftovers:
            log.warning(
                "drain_timeout_cancelling",
                requests=[r.as_dict() for r in leftovers],
                drain_timeout_seconds=timeout,
            )
            for request in leftovers:
                if request.token is not None:
                    request.token.cancel("shutting_down")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_ANSWER_SECONDS):
                    await runtime.in_flight.wait_idle()
        log.info(
            "drain_complete",
            seconds=round(time.monotonic() - started, 3),
            cancelled=len(leftovers),
        )
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous.get(sig)
        server = getattr(previous, "__self__", None)
        if server is not None and hasattr(server, "should_exit"):
            # uvicorn's Server: asking it to exit directly (rather than through its
            # signal handler, which re-raises the signal at the end) exits with 0.
            server.should_exit = True
        elif previous is not None:
            previous(sig, frame)
        else:
            signal.raise_signal(sig)
