"""Server-sent events read strictly by the spec, so a test sees the wire format a
client sees: blocks separated by a blank line, ``data:`` lines, ``:`` comments."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

EVENT_STREAM = "text/event-stream"


def events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each event's JSON data, as the lines arrive; fails on any line a JSON event
    stream should not carry."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield json.loads("\n".join(data))
                data = []
        elif line.startswith(":"):
            continue  # keep-alive comment
        else:
            field, _, value = line.partition(":")
            assert field == "data", f"unexpected SSE line {line!r}"
            data.append(value.removeprefix(" "))
    assert not data, "the stream ended inside an event"


def parse(text: str) -> list[dict[str, Any]]:
    """The events of a whole response body."""
    return list(events(text.replace("\r\n", "\n").split("\n")))


@contextlib.contextmanager
def posted(url: str, audio: Path, **fields: str) -> Iterator[httpx.Response]:
    """POST ``audio`` as ``file`` with ``fields``; the response open for streaming."""
    with (
        audio.open("rb") as fp,
        httpx.stream(
            "POST", url, files={"file": (audio.name, fp)}, data=fields, timeout=120
        ) as response,
    ):
        yield response
