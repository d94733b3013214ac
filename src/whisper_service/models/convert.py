"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint.

The embedded models ship in CTranslate2 format only (that is what faster-whisper
loads). The torch engine needs an openai-whisper checkpoint: a torch file holding
``dims`` and ``model_state_dict``. The weights are the same numbers laid out
differently: CTranslate2 fuses the self-attention query/key/value projections (and
the cross-attention key/value) into one matrix, names layer norms gamma/beta, and
keeps the key projection's (always zero) bias that Whisper does not have.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name) for name in ("float32", "int8", "int16", "int32", "float16")
)
_BFLOAT16_ID = 5
_SUPPORTED_BINARY_VERSIONS = range(5, 7)


class ConversionError(RuntimeError):
    """The source is not a CTranslate2 Whisper model this converter understands."""


def _read_string(fp: BinaryIO) -> str:
    (length,) = struct.unpack("<H", fp.read(2))
    return fp.read(length)[:-1].decode("utf-8")


def _unpack(fp: BinaryIO, fmt: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    data = fp.read(size)
    if len(data) != size:
        raise ConversionError("model.bin ends early: the file is truncated")
    return struct.unpack(fmt, data)


def _iter_variables(fp: BinaryIO) -> Iterator[tuple[str, np.ndarray]]:
    (count,) = _unpack(fp, "<I")
    for _ in range(count):
        name = _read_string(fp)
        (ndim,) = _unpack(fp, "<B")
        shape = _unpack(fp, f"<{ndim}I") if ndim else ()
        (type_id,) = _unpack(fp, "<B")
        (num_bytes,) = _unpack(fp, "<I")
        raw = fp.read(num_bytes)
        if len(raw) != num_bytes:
            raise ConversionError(f"model.bin ends inside variable {name!r}")
        if type_id == _BFLOAT16_ID:
            # bfloat16 is the top half of a float32.
            words = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = words.view(np.float32)
        elif type_id < len(_CT2_DTYPES):
            array = np.frombuffer(raw, dtype=_CT2_DTYPES[type_id].newbyteorder("<"))
        else:
            raise ConversionError(f"variable {name!r} has unknown data type id {type_id}")
        yield name, array.reshape(shape)


def read_ct2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` as float32 arrays (int8 dequantized),
    aliases resolved."""
    with model_bin.open("rb") as fp:
        (version,) = _unpack(fp, "<I")
        if version not in _SUPPORTED_BINARY_VERSIONS:
            raise ConversionError(f"unsupported CTranslate2 binary version {version}")
        spec = _read_string(fp)
        if spec != "WhisperSpec":
            raise ConversionError(f"{model_bin} holds a {spec}, not a WhisperSpec")
        _unpack(fp, "<I")  # spec revision
        variables = dict(_iter_variables(fp))
        (alias_count,) = _unpack(fp, "<I")
        aliases = [(_read_string(fp), _read_string(fp)) for _ in range(alias_count)]
    for name in [n for n in variables if n.endswith("/weight_scale")]:
        base = name[: -len("_scale")]
        scale = variables.pop(name).astype(np.float32)
        weight = variables[base].astype(np.float32)
        variables[base] = weight / scale.reshape(-1, *([1] * (weight.ndim - 1)))
    # After dequantizing, so an alias of an int8 weight gets the float values too.
    for alias, target in aliases:
        variables[alias] = variables[target]
    return {
        n: v.astype(np.float32) if v.dtype.kind == "f" or v.ndim > 0 else v
        for n, v in variables.items()
    }


def _attention(
    prefix: str, out: str, v: dict[str, np.ndarray], fused: str, split: list[str]
) -> dict[str, np.ndarray]:
    """Split a fused projection into named Whisper ones; key projections get no bias."""
    state: dict[str, np.ndarray] = {}
    weights = np.split(v[f"{prefix}/{fused}/weight"], len(split))
    biases = np.split(v[f"{prefix}/{fused}/bias"], len(split))
    for name, weight, bias in zip(split, weights, biases, strict=True):
        state[f"{out}.{name}.weight"] = weight
        if name != "key":
            state[f"{out}.{name}.bias"] = bias
    return state


def _linear(src: str, dst: str, v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/weight"], f"{dst}.bias": v[f"{src}/bias"]}


def _norm(src: str, dst: str, v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _count_layers(v: dict[str, np.ndarray], side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    return len({m.group(1) for name in v if (m := pattern.match(name))})


def _num_heads(v: dict[str, np.ndarray], side: str, n_state: int) -> int:
    stored = v.get(f"{side}/num_heads")
    # Every released Whisper uses 64-dimensional heads; older files omit num_heads.
    return int(stored) if stored is not None else n_state // 64


def convert_state(v: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Map CTranslate2 variables to openai-whisper ``(dims, state_dict)``."""
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(n_audio_ctx),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": _num_heads(v, "encoder", n_audio_state),
        "n_audio_layer": _count_layers(v, "encoder"),
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": _num_heads(v, "decoder", n_text_state),
        "n_text_layer": _count_layers(v, "decoder"),
    }
    state: dict[str, np.ndarray] = {
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
    }
    state.update(_linear("encoder/conv1", "encoder.conv1", v))
    state.update(_linear("encoder/conv2", "encoder.conv2", v))
    state.update(_norm("encoder/layer_norm", "encoder.ln_post", v))
    state.update(_norm("decoder/layer_norm", "decoder.ln", v))
    qkv = ["query", "key", "value"]
    for side, layers in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        for i in range(layers):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            sa = f"{src}/self_attention"
            state.update(_attention(sa, f"{dst}.attn", v, "linear_0", qkv))
            state.update(_linear(f"{sa}/linear_1", f"{dst}.attn.out", v))
            state.update(_norm(f"{sa}/layer_norm", f"{dst}.attn_ln", v))
            state.update(_linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0", v))
            state.update(_linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2", v))
            state.update(_norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", v))
            if side == "decoder":
                ca = f"{src}/attention"
                state.update(_linear(f"{ca}/linear_0", f"{dst}.cross_attn.query", v))
                state.update(_attention(ca, f"{dst}.cross_attn", v, "linear_1", ["key", "value"]))
                state.update(_linear(f"{ca}/linear_2", f"{dst}.cross_attn.out", v))
                state.update(_norm(f"{ca}/layer_norm", f"{dst}.cross_attn_ln", v))
    return dims, state


def convert_ct2_to_openai_whisper(model_dir: Path, output: Path) -> Path:
    """Write an openai-whisper checkpoint for the CTranslate2 model in ``model_dir``.

    The checkpoint also carries ``alignment_heads`` (from config.json) so word
    timestamps use the same cross-attention heads as the original model. Written to a
    temporary name and renamed, so a crash never leaves a half-written checkpoint.
    """
    import torch

    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"no model.bin in {model_dir}")
    dims, state = convert_state(read_ct2_variables(model_bin))
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    checkpoint = {
        "dims": dims,
        "model_state_dict": {
            k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in state.items()
        },
        "alignment_heads": [list(map(int, pair)) for pair in config.get("alignment_heads", [])],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(output)
    return output
