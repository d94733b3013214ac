"""The image of Dockerfile.secure, built once per run by `make image`'s script, and the
Docker engine it needs: started here when none answers, and then stopped at the end,
with every container the tests ran removed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import REPO
from tests.support.containers import IMAGE, remove_test_containers


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A Docker engine; one this fixture started is stopped when the run ends."""
    engine = [str(REPO / "scripts" / "docker_engine.sh")]
    started_here = not _engine_answers()
    if started_here:
        subprocess.run(["bash", *engine, "start"], check=True, timeout=600)
    try:
        yield
    finally:
        remove_test_containers()
        if started_here:
            subprocess.run(["bash", *engine, "stop"], check=False, timeout=120)


@pytest.fixture(scope="session")
def image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built from this checkout by scripts/build_image.sh (docker's layer
    cache makes a rebuild of an unchanged tree quick)."""
    log = tmp_path_factory.mktemp("image") / "build.log"
    with log.open("w") as out:
        built = subprocess.run(
            ["bash", str(REPO / "scripts" / "build_image.sh")],
            env={**os.environ, "IMAGE": IMAGE},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1200,
            check=False,
        )
    if built.returncode != 0:
        pytest.fail(f"building the image failed:\n{log.read_text()[-6000:]}")
    return IMAGE
