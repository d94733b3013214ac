"""The images of Dockerfile.secure, the default and the lean one, built once per run by
`make image`'s script in the background while the rest of the suite runs
(tests/support/image_build.py), and the Docker engine they need: started when none
answers, and then stopped at the end, with every container the tests ran removed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import image_build
from tests.support.containers import IMAGE, LEAN_IMAGE, remove_test_containers


@pytest.fixture(scope="session")
def images() -> Iterator[None]:
    """Both images built (docker's layer cache makes a rebuild of an unchanged tree
    quick); the containers the tests ran removed at the end, and an engine started
    for them stopped."""
    build = image_build.start()
    try:
        try:
            build.wait()
        except RuntimeError as failed:
            pytest.fail(str(failed))
        yield
    finally:
        remove_test_containers()
        if build.starts_engine:
            image_build.stop_engine()


@pytest.fixture(scope="session")
def image(images: None) -> str:
    """The default image: both engines."""
    return IMAGE


@pytest.fixture(scope="session")
def lean_image(images: None) -> str:
    """The lean image: faster-whisper only, no torch."""
    return LEAN_IMAGE
