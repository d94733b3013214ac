"""The docs stay true to the code: every setting and every error code is documented."""

from __future__ import annotations

import re

from tests.support import REPO
from whisper_service.config import PRESETS, Settings, env_var_name

DOCS = REPO / "docs"


def test_every_setting_is_in_the_configuration_doc() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [env_var_name(f) for f in Settings.model_fields if f"`{env_var_name(f)}`" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_preset_values_in_the_doc_match_the_code() -> None:
    text = (DOCS / "configuration.md").read_text().split("## Presets", 1)[1]
    for field in ("memory_limit_mib", "container_concurrency", "queue_size"):
        row = re.search(rf"^\| `{env_var_name(field)}` \|(.*)\|$", text, re.M)
        assert row, field
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells == [str(PRESETS[env][field]) for env in PRESETS], field


def test_every_error_code_is_in_the_api_doc() -> None:
    # Request errors are listed in api.md; the codes a failed job carries in jobs.md.
    text = (DOCS / "api.md").read_text() + (DOCS / "jobs.md").read_text()
    sources = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    # Error classes (code = "..."), one-off ServiceErrors (code="..."), refusal reasons.
    codes = set(re.findall(r'\bcode ?= ?"([a-z_]+)"', sources))
    codes |= set(re.findall(r'^    "([a-z_]+)": \((?:4|5)\d\d,', sources, re.M))
    codes.discard("invalid_audio")  # abstract base of the audio errors
    codes.discard("client_disconnected")  # the client is gone: nobody reads it
    assert codes, "no error codes found: the pattern is stale"
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert not missing, f"undocumented error codes: {missing}"


def test_readme_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (REPO / link).is_file(), link


def test_every_metric_is_in_the_observability_doc() -> None:
    from prometheus_client import Counter, Gauge, Histogram

    from whisper_service.observability import metrics

    text = (DOCS / "observability.md").read_text()
    names = []
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.append(f"{value._name}_total")
        elif isinstance(value, Gauge | Histogram):
            names.append(value._name)
    assert len(names) >= 15
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"undocumented metrics: {missing}"


def test_generated_configuration_tables_are_fresh() -> None:
    from whisper_service.config.docs import render_into

    text = (DOCS / "configuration.md").read_text()
    assert render_into(text) == text, "docs/configuration.md is stale: run `make docs`"


def test_the_architecture_map_names_every_module() -> None:
    """docs/architecture.md's map of src/ names each module under its package, so the
    map cannot fall behind the code."""
    text = (DOCS / "architecture.md").read_text()
    block = text[text.index("src/whisper_service/\n") :]
    block = block[: block.index("```")]
    sections: dict[str, str] = {}
    current = ""
    for line in block.splitlines()[1:]:
        # A package at two spaces, its subpackages two deeper: each its own section.
        entry = re.match(r"( {2}| {4})(\w+/|\w+\.py)\s", line)
        if entry:
            depth, name = len(entry.group(1)) // 2, entry.group(2)
            parents = current.split("/")[: depth - 1] if current else []
            current = "/".join([*parents, name.rstrip("/")]) if name.endswith("/") else ""
        sections[current] = sections.get(current, "") + line + "\n"
    package_root = REPO / "src" / "whisper_service"
    unnamed = [
        str(path.relative_to(package_root))
        for path in sorted(package_root.rglob("*.py"))
        if path.name != "__init__.py"
        and not re.search(
            rf"\b{re.escape(path.name)}",
            sections.get(str(path.parent.relative_to(package_root)).replace(".", ""), ""),
        )
    ]
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"
