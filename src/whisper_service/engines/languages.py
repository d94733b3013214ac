"""Language codes and names Whisper knows."""

from __future__ import annotations

from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE


def normalize_language(value: str | None) -> str | None:
    """Map ``en``, ``English`` or ``english`` to ``en``; None/empty stays None.

    Raises ValueError naming the unknown language.
    """
    if value is None or not value.strip():
        return None
    key = value.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return str(TO_LANGUAGE_CODE[key])
    raise ValueError(f"unknown language {value!r}; use an ISO 639-1 code such as 'en' or 'de'")


def language_name(code: str) -> str:
    """Whisper's English name for a language code (``en`` -> ``english``)."""
    return str(LANGUAGES.get(code, code))
