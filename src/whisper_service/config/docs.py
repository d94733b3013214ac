"""The settings reference of docs/configuration.md, generated from the Settings model so
the documentation cannot drift from the code (a test compares them)."""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from whisper_service.config.fields.shared import env_var_name
from whisper_service.config.loading import preset_settings
from whisper_service.config.presets import PRESETS, AppEnv
from whisper_service.config.settings import Settings

BEGIN = "<!-- BEGIN GENERATED: {name} (whisper-service config docs) -->"
END = "<!-- END GENERATED: {name} -->"


def _allowed(info: FieldInfo) -> str:
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return ", ".join(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ", ".join(str(m.value) for m in annotation)
    if annotation is bool:
        return "true, false"
    if typing.get_origin(annotation) is list:
        return "comma-separated"
    if annotation is Path:
        return "path"
    bounds = []
    for meta in info.metadata:
        if isinstance(meta, Ge):
            bounds.append(f"≥ {meta.ge:g}")
        elif isinstance(meta, Gt):
            bounds.append(f"> {meta.gt:g}")
        elif isinstance(meta, Le):
            bounds.append(f"≤ {meta.le:g}")
        elif isinstance(meta, Lt):
            bounds.append(f"< {meta.lt:g}")
    return ", ".join(bounds) if bounds else "text"


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, Path):
        return str(value).replace(str(Path.home()), "~")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table() -> str:
    """Every setting: variable, default, allowed values, meaning."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        rows.append(
            f"| `{env_var_name(name)}` | `{_value(default)}` | {_allowed(info)} "
            f"| {info.description or ''} |"
        )
    return "\n".join(rows)


def presets_table() -> str:
    """Every setting a preset changes, with its value in each preset."""
    envs = list(AppEnv)
    fields = [f for f in Settings.model_fields if any(f in PRESETS[e] for e in envs)]
    effective = {e: preset_settings(e) for e in envs}
    rows = [
        "| variable | " + " | ".join(e.value for e in envs) + " |",
        "|---|" + "---|" * len(envs),
    ]
    for field in fields:
        values = " | ".join(_value(getattr(effective[e], field)) for e in envs)
        rows.append(f"| `{env_var_name(field)}` | {values} |")
    return "\n".join(rows)


SECTIONS = {"settings": settings_table, "presets": presets_table}


def render_into(text: str) -> str:
    """``text`` with every generated section replaced by a fresh rendering."""
    for name, build in SECTIONS.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        first = text.find(begin)
        last = text.find(end, first)
        if first < 0 or last < 0:
            raise ValueError(f"docs section markers for {name!r} are missing")
        text = f"{text[:first]}{begin}\n{build()}\n{text[last:]}"
    return text
