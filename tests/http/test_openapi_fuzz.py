"""The OpenAPI document is the contract: schemathesis generates requests for every
operation from the document itself, valid and not, and every answer must be
documented (status, content type, body schema) and never a server error.

Bounded and seeded, so it runs the same cases on every machine: the app served over
HTTP on 127.0.0.1 from this process, with a stand-in engine (the model's words are
tested elsewhere; here every route, form and error path is): about 1,200 requests in
half a minute. Each generated upload is also sent made valid around a real recording
(``KEPT_FIELDS``), so that cases reach the pipeline and every success body and format
is checked against the document too.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import AUDIO
from tests.support.fakes import FakeEngine, loader
from tests.support.in_process import quiet_settings
from whisper_service.api import openapi
from whisper_service.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
RECORDINGS = [(AUDIO / name).read_bytes() for name in ("jfk.flac", "hotwords.mp3")]

# With a job store (a directory, the local queue), so /jobs is fuzzed too. Named, not
# made: the service creates it when it starts, and collecting this module (with the
# test deselected, say) leaves nothing behind.
JOBS_STORE = Path(tempfile.gettempdir()) / f"openapi-fuzz-jobs-{uuid.uuid4().hex}"
app = create_app(
    quiet_settings(diarization=False, rate_limit_per_minute=0, jobs_store=str(JOBS_STORE)),
    engine_loader=loader(FakeEngine(multilingual=True)),
)
# The document the app serves, loaded without starting it.
schema = schemathesis.openapi.from_dict(
    openapi.document(app),
    config=schemathesis.config.SchemathesisConfig.from_dict(
        {
            "seed": 20261205,
            "generation": {"max-examples": 60, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


# Per upload route, the generated fields kept in a request made to pass validation:
# the ones any value the document allows of is honoured (formats, decoding options).
KEPT_FIELDS = {
    "/transcribe": ("response_format", "word_timestamps", "temperature", "beam_size", "vad_filter"),
    "/jobs": ("response_format", "word_timestamps", "temperature", "beam_size", "vad_filter"),
    "/detect-language": (),
    "/v1/audio/transcriptions": ("response_format", "temperature", "stream"),
    "/v1/audio/translations": ("response_format", "temperature"),
}


@schema.hook("flatmap_body")
def _real_audio_too(context: Any, body: Any) -> Any:
    """Each generated upload as it is, or made valid: a real recording and the fields
    of ``KEPT_FIELDS`` only. Generated forms alone almost never pass validation (a
    random language, file and gcs_uri both), so they would never reach the pipeline,
    the success bodies and the text formats."""
    path = context.operation.path if context.operation is not None else ""
    if not (isinstance(body, dict) and path in KEPT_FIELDS):
        return st.just(body)
    kept = {name: body[name] for name in KEPT_FIELDS[path] if name in body}
    return st.sampled_from([body, *({**kept, "file": audio} for audio in RECORDINGS)])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The app served over real HTTP on 127.0.0.1 (uvicorn in a thread of this
    process), ready: its lifespan runs once for every case."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (server.started and app.state.runtime.ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    assert app.state.runtime.ready
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    shutil.rmtree(JOBS_STORE, ignore_errors=True)


@schema.parametrize()
def test_every_answer_is_documented(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS)
