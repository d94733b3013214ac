"""The image of Dockerfile.secure, built once per run by `make image`'s script in the
background while the rest of the suite runs (tests/support/image_build.py), and the
Docker engine it needs: started when none answers, and then stopped at the end, with
every container the tests ran removed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import image_build
from tests.support.containers import remove_test_containers


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """The image's name, once built (docker's layer cache makes a rebuild of an
    unchanged tree quick)."""
    build = image_build.start()
    try:
        try:
            yield build.wait()
        except RuntimeError as failed:
            pytest.fail(str(failed))
    finally:
        remove_test_containers()
        if build.starts_engine:
            image_build.stop_engine()
