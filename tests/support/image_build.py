"""The images of Dockerfile.secure (the default, then the lean one), built in the
background while the rest of the suite runs.

A fresh machine spends about six minutes installing the Docker engine, making the base
from Debian's archive and building the image, most of it waiting on downloads and
disk. Started when collection finds container tests (which then run last), that time
overlaps the other tests instead of adding to them. The build runs at the lowest CPU
and I/O priority, so the timing-sensitive tests beside it keep the processors. The
build's work happens inside the engine, so an engine started for it starts at that
priority too, and is restarted at the normal one once the image is built: the
container tests then run their containers as any other process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support import REPO
from tests.support.containers import IMAGE, LEAN_IMAGE

_ENGINE = REPO / "scripts" / "docker_engine.sh"
_BUILD = REPO / "scripts" / "build_image.sh"
# Cold: apt, mmdebstrap and both builds took 345 s alone on a slow session of a 2-core
# machine, more beside tests. Under the container tests' own timeout (1200 s), so that a
# build that hangs fails with its log rather than with pytest-timeout's traceback.
BUILD_TIMEOUT_S = 1100


def engine_answers() -> bool:
    """A Docker engine answers on this machine."""
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


class BackgroundBuild:
    """`scripts/build_image.sh` for the default image and the lean one (it starts the
    engine where none answers) in a subprocess at idle priority; ``wait`` collects it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        # Whether this run starts the engine (and so must stop it at the end).
        self.starts_engine = not engine_answers()
        # Both images, the lean one second: it shares the builder's layers.
        both = f'IMAGE={IMAGE} bash "$0" && IMAGE={LEAN_IMAGE} ENGINES=faster-whisper bash "$0"'
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["nice", "-n", "19", "ionice", "-c", "3", "bash", "-c", both, str(_BUILD)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self) -> None:
        """Until both images are built (and an engine this build started runs at normal
        priority again); a failed build raises with its log."""
        try:
            code = self.process.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(
                f"building the image took over {BUILD_TIMEOUT_S} s:\n{self.tail()}"
            ) from None
        if code != 0:
            raise RuntimeError(f"building the image failed ({code}):\n{self.tail()}")
        if self.starts_engine:
            stop_engine()
            subprocess.run(["bash", str(_ENGINE), "start"], check=True, timeout=600)

    def abandon(self) -> None:
        """End a build still running when the run ends early (with the engine it
        started, which runs in its process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)

    def tail(self) -> str:
        """The end of the build's log."""
        return self.log.read_text(errors="replace")[-6000:]


_started: BackgroundBuild | None = None


def start() -> BackgroundBuild:
    """The run's build, begun on the first call."""
    global _started
    if _started is None:
        _started = BackgroundBuild(Path(tempfile.gettempdir()) / "whisper-service-image-build.log")
    return _started


def started() -> BackgroundBuild | None:
    """The run's build, if one was begun."""
    return _started


def stop_engine() -> None:
    """Stop the engine that scripts/docker_engine.sh started (only that one)."""
    subprocess.run(["bash", str(_ENGINE), "stop"], check=False, timeout=120)
