"""Weight formats of the native step: Q4_1 and Q8_0 blocks as a GGUF file ships them, bf16, fp32.

Rule: ``q4_1`` weights of a GGUF model are the file's own bytes, never re-quantized: ``gguf_matrices``
reads them (rows reordered where llama.cpp permuted them for its rotary layout, whole rows only) and
the C step (quant.c, layouts in quant.h) multiplies them as they are. Formats the file does not hold
(``q8_0`` and ``bf16`` of a Q4_1 file, any format of a transformers model) are made here from the fp32
weights with llama.cpp's rounding rules, so they are the same bytes its quantizer would write.
``dequantize`` is the inverse, for tests and for checking a file against the loaded model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from llmasos.engine.errors import EngineSetupError

WEIGHT_FORMATS = ("q4_1", "q8_0", "bf16", "fp32")
FORMAT_CODES = {"fp32": 0, "q4_1": 1, "q8_0": 2, "bf16": 3}  # FMT_* in quant.h
ISAS = ("scalar", "avx2", "avx512", "avx512vnni")  # ISA_* in quant.h, in order
BLOCK = 32
BLOCK_BYTES = {"q4_1": 20, "q8_0": 34, "bf16": 64}


class WeightFormatError(EngineSetupError, ValueError):
    """A weight format that is unknown, or that a model's sizes cannot be stored in."""


def check_format(weights: Any) -> str:
    """The format name, or WeightFormatError saying which ones exist."""
    if not isinstance(weights, str) or weights not in WEIGHT_FORMATS:
        raise WeightFormatError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {weights!r}")
    return weights


def row_bytes(fmt: str, k: int) -> int:
    return k * 4 if fmt == "fp32" else k // BLOCK * BLOCK_BYTES[fmt]


def quantize(weight: np.ndarray, fmt: str) -> np.ndarray:
    """[N, K] float32 -> [N, row_bytes] uint8 in fmt (K a multiple of 32), as ggml's reference quantizer."""
    w = np.ascontiguousarray(weight, dtype=np.float32)
    n, k = w.shape
    if k % BLOCK:
        raise WeightFormatError(f"{fmt} stores rows of a multiple of {BLOCK} values, not {k}")
    if fmt == "bf16":
        bits = w.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return rounded.astype(np.uint16).view(np.uint8).reshape(n, k * 2)
    blocks = w.reshape(n, k // BLOCK, BLOCK)
    if fmt == "q8_0":
        amax = np.abs(blocks).max(axis=-1, keepdims=True)
        d = amax / 127.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        x = blocks * inv
        q = (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int8)  # roundf: halves away from zero
        out = np.empty((n, k // BLOCK, 34), dtype=np.uint8)
        out[..., :2] = d.astype(np.float16).view(np.uint8)
        out[..., 2:] = q.view(np.uint8)
        return out.reshape(n, -1)
    if fmt == "q4_1":
        lo, hi = blocks.min(axis=-1, keepdims=True), blocks.max(axis=-1, keepdims=True)
        d = (hi - lo) / 15.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        q = np.clip(np.floor((blocks - lo) * inv + 0.5), 0, 15).astype(np.uint8)
        out = np.empty((n, k // BLOCK, 20), dtype=np.uint8)
        out[..., 0:2] = d.astype(np.float16).view(np.uint8)
        out[..., 2:4] = lo.astype(np.float16).view(np.uint8)
        out[..., 4:] = q[..., :16] | (q[..., 16:] << 4)
        return out.reshape(n, -1)
    raise WeightFormatError(f"cannot quantize to {fmt!r}")


def dequantize(rows: np.ndarray, fmt: str, k: int) -> np.ndarray:
    """[N, row_bytes] uint8 in fmt -> [N, k] float32 (what the C step multiplies by)."""
    n = rows.shape[0]
    if fmt == "fp32":
        return rows.view(np.float32).reshape(n, k)
    if fmt == "bf16":
        return (rows.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(n, k)
    blocks = rows.reshape(n, k // BLOCK, BLOCK_BYTES[fmt])
    d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)
    if fmt == "q8_0":
        return (blocks[..., 2:].view(np.int8).astype(np.float32) * d).reshape(n, k)
    m = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[..., 4:]
    q = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.float32)
    return (q * d + m).reshape(n, k)


GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
GGUF_TYPES = {"Q4_1": "q4_1", "Q8_0": "q8_0", "BF16": "bf16", "F32": "fp32"}


def gguf_matrices(path: str | os.PathLike[str], heads: int, kv_heads: int) -> dict[str, tuple[str, np.ndarray]]:
    """A GGUF Llama's matrices as stored: {"layers.{i}.{q_proj..down_proj}" | "embed" | "lm_head":
    (format, [rows, row_bytes] uint8)}, rows in the transformers order (q and k un-permuted from
    llama.cpp's rotary layout). lm_head is absent when the file ties it to the embedding.

    The blocks are kept in ``$LLMASOS_HOME/models/blocks`` after the first read (the gguf package parses
    every metadata field, the tokenizer's ~100k strings included, in Python: seconds at each load);
    the cache is keyed by the file's path, size and modification time, and rebuilt if unreadable."""
    from llmasos.home import llmasos_home, private_dir

    path = Path(path)
    st = path.stat()
    tag = f"{path.stem}-{st.st_size}-{st.st_mtime_ns}-{heads}-{kv_heads}"
    cache = llmasos_home() / "models" / "blocks" / f"{tag}.npz"
    try:
        with np.load(cache) as saved:
            return {name.split("|", 1)[1]: (name.split("|", 1)[0], saved[name]) for name in saved.files}
    except (OSError, ValueError, IndexError):
        pass  # not cached yet (or a damaged copy): read the file, then cache it
    out = _read_gguf(path, heads, kv_heads)
    try:
        private_dir(cache.parent)
        tmp = cache.with_name(f"{tag}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{f"{fmt}|{key}": rows for key, (fmt, rows) in out.items()})
        os.chmod(tmp, 0o600)  # (files under LLMASOS_HOME are private to the user)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home: read the file each time
    return out


def _read_gguf(path: Path, heads: int, kv_heads: int) -> dict[str, tuple[str, np.ndarray]]:
    from gguf import GGUFReader

    reader = GGUFReader(Path(path))
    out: dict[str, tuple[str, np.ndarray]] = {}
    for t in reader.tensors:
        fmt = GGUF_TYPES.get(t.tensor_type.name)
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            key = "embed"
        elif t.name == "output.weight":
            key = "lm_head"
        elif len(parts) == 4 and parts[0] == "blk" and parts[2] in GGUF_NAMES.values():
            key = f"layers.{parts[1]}.{next(k for k, v in GGUF_NAMES.items() if v == parts[2])}"
        else:
            continue
        if fmt is None:
            raise WeightFormatError(f"{path}: {t.name} is {t.tensor_type.name}; the native step reads "
                                    f"{', '.join(GGUF_TYPES)} (choose weights='fp32')")
        rows = np.asarray(t.data).view(np.uint8).reshape(int(t.shape[-1]), -1)
        if parts[-2] in ("attn_q", "attn_k"):
            rows = rows[_unpermute(rows.shape[0], heads if parts[-2] == "attn_q" else kv_heads)]
        out[key] = (fmt, rows)
    return out


def _unpermute(n: int, heads: int) -> np.ndarray:
    """Row order undoing llama.cpp's rotary permutation of q / k (as transformers' GGUF loader does)."""
    return np.arange(n).reshape(heads, n // heads // 2, 2).swapaxes(1, 2).reshape(n)


def step_matrices(model: Any, weights: str | None, gguf: str | os.PathLike[str] | None = None,
                  ) -> tuple[str, str, dict[str, np.ndarray]]:
    """(layer format, embed/lm_head format, {name: [rows, row_bytes] uint8}) of a transformers Llama
    for the native step: per layer ``layers.{i}.qkv`` (q, k, v rows, zero rows up to a multiple of 8),
    ``.o``, ``.gate_up`` (all gate rows, then all up rows), ``.down``; ``embed`` (also the LM head when
    tied) and, when not tied, ``lm_head``. Matrices the GGUF file holds in the asked format are its
    own bytes, the embedding is the file's whatever its format (Q8_0 in llmasos' default model); the
    rest is quantized here from the model's fp32 weights (an embedding then Q8_0 for q4_1, as
    llama.cpp's files have it). weights None: the format of the file's matrices when they all share
    one the step reads (the file as shipped), else WeightFormatError."""
    config = model.config.get_text_config(decoder=True)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    for size in (config.hidden_size, config.intermediate_size,
                 heads * model.model.layers[0].self_attn.head_dim):
        if size % BLOCK:
            raise WeightFormatError(f"{weights} weights need sizes that are multiples of {BLOCK}; this "
                                    f"model has {size} (choose weights='fp32')")
    shipped = gguf_matrices(gguf, heads, kv_heads) if gguf is not None else {}
    if weights is None:
        kinds = {f for k, (f, _) in shipped.items() if k.startswith("layers.")}
        if len(kinds) != 1 or not kinds <= {"q4_1", "q8_0", "bf16"}:
            raise WeightFormatError(f"no single quantized format in {gguf}: {sorted(kinds)}")
        weights = kinds.pop()
    head_fmt = "q8_0" if weights == "q4_1" else weights
    if "embed" in shipped and shipped["embed"][0] != "fp32":
        head_fmt = shipped["embed"][0]
    tied = model.lm_head.weight is model.model.embed_tokens.weight

    def get(key: str, weight: Any, fmt: str) -> np.ndarray:
        if key in shipped and shipped[key][0] == fmt:
            return shipped[key][1]
        return quantize(weight.detach().float().numpy(), fmt)

    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.model.layers):
        a, m = layer.self_attn, layer.mlp
        q, k, v = (get(f"layers.{i}.{n}", getattr(a, n).weight, weights) for n in ("q_proj", "k_proj", "v_proj"))
        qkv = np.concatenate([q, k, v])
        pad = -qkv.shape[0] % 8
        out[f"layers.{i}.qkv"] = np.concatenate([qkv, np.zeros((pad, qkv.shape[1]), np.uint8)]) if pad else qkv
        out[f"layers.{i}.o"] = get(f"layers.{i}.o_proj", a.o_proj.weight, weights)
        out[f"layers.{i}.gate_up"] = np.concatenate([get(f"layers.{i}.gate_proj", m.gate_proj.weight, weights),
                                                     get(f"layers.{i}.up_proj", m.up_proj.weight, weights)])
        out[f"layers.{i}.down"] = get(f"layers.{i}.down_proj", m.down_proj.weight, weights)
    out["embed"] = get("embed", model.model.embed_tokens.weight, head_fmt)
    if not tied:
        out["lm_head"] = get("lm_head", model.lm_head.weight, head_fmt)
    return weights, head_fmt, out


__all__ = ["FORMAT_CODES", "ISAS", "WEIGHT_FORMATS", "WeightFormatError", "check_format", "dequantize",
           "gguf_matrices", "quantize", "row_bytes", "step_matrices"]
