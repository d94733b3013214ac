"""How every benchmark script ends: its report as JSON, in a file and on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(path: Path, report: Any) -> None:
    """Write ``report`` to ``path`` (its folder made) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    path.write_text(text)
    print(text)
