"""Language codes and names Whisper knows.

The table is openai-whisper's own (``whisper/tokenizer.py``), loaded from that file
alone: importing the ``whisper`` package would import torch, which costs a
faster-whisper worker about 200 MB of memory for nothing.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType


@cache
def _tokenizer_module() -> ModuleType:
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("openai-whisper is not installed")
    path = f"{next(iter(spec.submodule_search_locations))}/tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_whisper_tokenizer_table", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _languages() -> dict[str, str]:
    languages: dict[str, str] = _tokenizer_module().LANGUAGES
    return languages


def _codes_by_name() -> dict[str, str]:
    codes: dict[str, str] = _tokenizer_module().TO_LANGUAGE_CODE
    return codes


def normalize_language(value: str | None) -> str | None:
    """Map ``en``, ``English`` or ``english`` to ``en``; None/empty stays None.

    Raises ValueError naming the unknown language.
    """
    if value is None or not value.strip():
        return None
    key = value.strip().lower()
    if key in _languages():
        return key
    if key in _codes_by_name():
        return _codes_by_name()[key]
    raise ValueError(f"unknown language {value!r}; use an ISO 639-1 code such as 'en' or 'de'")


def language_name(code: str) -> str:
    """Whisper's English name for a language code (``en`` -> ``english``)."""
    return _languages().get(code, code)
