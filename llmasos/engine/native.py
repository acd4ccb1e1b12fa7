"""The native decode step: one C function runs a whole decode step of a Llama-family fp32 model.

Rule: a decode step of a few rows is bound by reading the weights, and PyTorch's matrix-vector
kernels plus a transformers forward reach about a quarter of what the memory gives here
(bench/decode.py). ``llama_decode.c`` (shipped beside this file) streams each weight once in a
blocked layout and does the step's small operations in the same OpenMP region; engine/nativelib.py
builds and loads it. HFEngine uses it
for decode steps of up to ``native_max_batch`` rows when ``for_model`` accepts the model; prefill and
larger batches go through the transformers forward, whose Linear layers ``attach`` turns into views
of the same blocked weights (``NativeLinear``, one copy of the weights). Where it cannot be used - no C compiler, no AVX2/FMA, another
architecture, a model it does not cover, ``LLMASOS_NATIVE=0`` - ``for_model`` says why and the engine
runs everything through transformers, with the same results.

The library links libgomp, which PyTorch has already loaded, so both share one OpenMP runtime and,
called from the model thread (engine/worker.py), one thread team.
"""

from __future__ import annotations

import ctypes
import math
import os
import weakref
from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from llmasos.engine.kvbatch import KV_DTYPES, LayerBuffers
from llmasos.engine.nativelib import NativeUnavailable, best_isa, huge_empty, library
from llmasos.engine.quant import FORMAT_CODES, ISAS, WeightFormatError, check_format, dequantize, step_matrices

ROPE_TYPES = ("default", "linear", "llama3")  # rotary kinds whose frequencies do not depend on length


class _Weights(ctypes.Structure):
    _fields_ = [
        *[(f, ctypes.c_int64) for f in
          ("hidden", "heads", "kv_heads", "head_dim", "inter", "vocab_padded", "layers", "vocab")],
        ("eps", ctypes.c_float), ("attn_scale", ctypes.c_float), ("rope_scale", ctypes.c_float),
        *[(f, ctypes.c_void_p) for f in
          ("inv_freq", "embed", "final_norm", "lm_head", "attn_norm", "mlp_norm", "qkv", "o",
           "gate_up", "down")],
        *[(f, ctypes.c_int64) for f in ("fmt", "head_fmt", "isa")],
    ]


def blocked(weight: torch.Tensor) -> torch.Tensor:
    """[N, K] -> [ceil(N / 8), K, 8]: eight output rows interleaved (zero rows pad N)."""
    n, k = weight.shape
    if n % 8:
        weight = F.pad(weight, (0, 0, 0, 8 - n % 8))
    return weight.detach().reshape(-1, 8, k).transpose(1, 2).contiguous()


class _Blocked:
    """A weight matrix to be laid out blocked, made only when asked: the rows of ``weights`` one after
    another (q, k, v fused), or with ``interleave`` their blocks alternating (gate, up: SwiGLU is
    applied as both sums of a block finish)."""

    def __init__(self, *weights: torch.Tensor, interleave: bool = False) -> None:
        self.weights, self.interleave = weights, interleave
        k = weights[0].shape[1]
        if interleave:
            self.shape = (sum((w.shape[0] + 7) // 8 for w in weights), k, 8)
        else:
            self.shape = ((sum(w.shape[0] for w in weights) + 7) // 8, k, 8)

    def make(self) -> torch.Tensor:
        if self.interleave:
            return torch.stack([blocked(w) for w in self.weights], dim=1).reshape(self.shape)
        return blocked(torch.cat(self.weights) if len(self.weights) > 1 else self.weights[0])


def _place(parts: list[tuple[str, Any]]) -> list[tuple[str, torch.Tensor]]:
    """Copy named tensors (or ``_Blocked`` layouts, made one at a time) as fp32, and numpy byte
    arrays (quantized rows) as uint8, into consecutive 64-byte-aligned views of one ``huge_empty``
    buffer."""
    shapes = [tuple(t.shape) for _, t in parts]
    nbytes = [math.prod(shape) * (1 if isinstance(t, np.ndarray) else 4) for (_, t), shape in zip(parts, shapes)]
    sizes = [(n + 63) // 64 * 64 for n in nbytes]
    arena = huge_empty(sum(sizes) // 4).view(torch.uint8)
    placed, offset = [], 0
    for (name, t), shape, n, size in zip(parts, shapes, nbytes, sizes, strict=True):
        raw = arena[offset : offset + n]
        if isinstance(t, np.ndarray):
            view = raw.view(shape)
            view.numpy()[...] = t  # (the GGUF's rows are a read-only memory map: no torch tensor of them)
        else:
            view = raw.view(torch.float32).view(shape)
            view.copy_(t.make() if isinstance(t, _Blocked) else t.detach())
        placed.append((name, view))
        offset += size
    return placed


def _pointers(tensors: list[torch.Tensor]) -> Any:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class NativeLlama:
    """A Llama-family model's weights in the native layout, and its decode step."""

    def __init__(self, model: Any, weights: str | None = "fp32", gguf: str | os.PathLike[str] | None = None,
                 isa: str | None = None) -> None:
        """weights: the format the step reads ("fp32" blocked; "q4_1", "q8_0", "bf16" as rows of
        blocks, quant.h; None: the GGUF file's own format where it has one the step reads, else fp32);
        gguf: the model's GGUF file, whose blocks are read as shipped; isa: the quantized products'
        instruction set (default and ceiling: ``best_isa()``)."""
        self.lib = library()
        self.format = "auto" if weights is None else check_format(weights)
        best = best_isa()
        self.isa = best if isa is None else isa
        if self.isa not in ISAS or ISAS.index(self.isa) > ISAS.index(best):
            raise NativeUnavailable(f"instruction set {isa!r} is not one of {ISAS[:ISAS.index(best) + 1]} "
                                    "(what this CPU runs)")
        config = model.config.get_text_config(decoder=True)
        _check(model, config)
        inner, layers = model.model, model.model.layers
        attn0 = layers[0].self_attn
        self.vocab = model.lm_head.weight.shape[0]
        self.hidden = config.hidden_size
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        head_dim = attn0.head_dim
        parts: list[tuple[str, Any]]
        mats: dict[str, np.ndarray] = {}
        if self.format != "fp32":
            try:
                fmt, head_fmt, mats = step_matrices(model, weights, gguf)
            except WeightFormatError as exc:
                if weights is not None:
                    raise NativeUnavailable(str(exc)) from exc
                fmt, head_fmt = "fp32", "fp32"  # auto: nothing quantized as shipped, or sizes it cannot take
            self.format = fmt
        if self.format == "fp32":
            # The weights in the order a step reads them, each made (blocked) only when it is copied
            # into one buffer on huge pages (``huge_empty``): loading holds one blocked copy at a time.
            parts = [("embed", inner.embed_tokens.weight), ("inv_freq", inner.rotary_emb.inv_freq)]
            for layer in layers:
                a, m = layer.self_attn, layer.mlp
                parts += [("attn_norm", layer.input_layernorm.weight),
                          ("qkv", _Blocked(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)),
                          ("o", _Blocked(a.o_proj.weight)),
                          ("mlp_norm", layer.post_attention_layernorm.weight),
                          ("gate_up", _Blocked(m.gate_proj.weight, m.up_proj.weight, interleave=True)),
                          ("down", _Blocked(m.down_proj.weight))]
            parts += [("final_norm", inner.norm.weight), ("lm_head", _Blocked(model.lm_head.weight))]
            fmt, head_fmt = "fp32", "fp32"
        else:
            parts = [("embed", mats["embed"]), ("inv_freq", inner.rotary_emb.inv_freq)]
            for i, layer in enumerate(layers):
                parts += [("attn_norm", layer.input_layernorm.weight), ("qkv", mats[f"layers.{i}.qkv"]),
                          ("o", mats[f"layers.{i}.o"]), ("mlp_norm", layer.post_attention_layernorm.weight),
                          ("gate_up", mats[f"layers.{i}.gate_up"]), ("down", mats[f"layers.{i}.down"])]
            parts += [("final_norm", inner.norm.weight), ("lm_head", mats.get("lm_head", mats["embed"]))]
            if "lm_head" not in mats:
                parts.pop()  # tied: the LM head reads the embedding's rows
        self.head_format = head_fmt
        placed = _place(parts)
        self._keep = [t for _, t in placed]  # every tensor the C side points into stays alive here
        one = {name: t for name, t in placed if name in ("embed", "inv_freq", "final_norm", "lm_head")}
        one.setdefault("lm_head", one["embed"])
        per_layer: dict[str, list[torch.Tensor]] = {k: [] for k in
                                                    ("attn_norm", "mlp_norm", "qkv", "o", "gate_up", "down")}
        for name, t in placed:
            if name in per_layer:
                per_layer[name].append(t)
        self.embed, self.lm_head = one["embed"], one["lm_head"]
        rotary = inner.rotary_emb
        self.per_layer = per_layer
        self._arrays = {k: _pointers(v) for k, v in per_layer.items()}
        # fp32: the blocked LM head's rows, a multiple of 8; quantized: exactly the vocabulary
        self.vocab_padded = self.lm_head.shape[0] * 8 if fmt == "fp32" else self.vocab
        self.weights = _Weights(
            hidden=self.hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
            inter=config.intermediate_size, vocab_padded=self.vocab_padded, layers=len(layers), vocab=self.vocab,
            eps=float(config.rms_norm_eps), attn_scale=float(attn0.scaling),
            rope_scale=float(getattr(rotary, "attention_scaling", 1.0)),
            inv_freq=one["inv_freq"].data_ptr(), embed=self.embed.data_ptr(),
            final_norm=one["final_norm"].data_ptr(), lm_head=self.lm_head.data_ptr(),
            **{k: ctypes.cast(v, ctypes.c_void_p) for k, v in self._arrays.items()},
            fmt=FORMAT_CODES[fmt], head_fmt=FORMAT_CODES[head_fmt], isa=ISAS.index(self.isa),
        )
        self.q_size, self.kv_size = heads * head_dim, kv_heads * head_dim
        self._wref = ctypes.byref(self.weights)
        self._fits = (0, 0, 0)  # rows, columns, threads the step buffers fit (_room)
        self._rows = 0  # rows of the last decode step
        self._bound: _Bound | None = None  # the cache buffers last checked (decode)

    def attach(self, model: Any) -> int:
        """Swap the model's Linear layers for NativeLinear views of this step's blocked weights, so the
        transformers forward (prefill, large batches) runs on the same kernels and the model holds
        no second copy of its weights. Returns how many layers are native now."""
        if self.format != "fp32":
            return self._attach_quantized(model)
        block = self.hidden * 8  # floats per 8-row block of a matrix with hidden inputs
        for i, layer in enumerate(model.model.layers):
            a, m, p = layer.self_attn, layer.mlp, self.per_layer
            views = {
                (a, "q_proj"): (p["qkv"][i], 0, self.q_size, block),
                (a, "k_proj"): (p["qkv"][i], self.q_size // 8 * block, self.kv_size, block),
                (a, "v_proj"): (p["qkv"][i], (self.q_size + self.kv_size) // 8 * block, self.kv_size, block),
                (a, "o_proj"): (p["o"][i], 0, self.hidden, self.q_size * 8),
                (m, "gate_proj"): (p["gate_up"][i], 0, m.gate_proj.out_features, 2 * block),
                (m, "up_proj"): (p["gate_up"][i], block, m.up_proj.out_features, 2 * block),
                (m, "down_proj"): (p["down"][i], 0, self.hidden, m.down_proj.in_features * 8),
            }
            for (parent, name), (buf, offset, out, stride) in views.items():
                if type(getattr(parent, name)) is torch.nn.Linear:
                    setattr(parent, name, NativeLinear(self.lib, buf, offset, out, buf.shape[1], stride))
        if type(model.lm_head) is torch.nn.Linear:
            model.lm_head = NativeLinear(self.lib, self.lm_head, 0, self.vocab, self.hidden, block)
        return sum(isinstance(mod, NativeLinear) for mod in model.modules())

    def _attach_quantized(self, model: Any) -> int:
        """attach() for quantized / bf16 weights: QuantLinear views of row ranges of the step's matrices;
        the model's embedding becomes the step's, dequantized (prefill and decode see one model).

        Rule: these layers run on fp32 activations (at most the AVX-512 path), never VNNI's int8 ones.
        The prompt's forward conditions the whole answer, and on the default model int8 activations
        there flipped greedy answers (France's capital: "L'Étoile, ..." instead of "Paris") while the
        perplexity moved only 0.4 %. The C decode step keeps VNNI at every row count (quant.c sections 3b and 3c)."""
        code, isa = FORMAT_CODES[self.format], min(ISAS.index(self.isa), ISAS.index("avx512"))
        scratch = _Scratch(self.lib)  # one activation buffer for all the layers (one model thread)
        embed = model.model.embed_tokens.weight
        rows = dequantize(self.embed.numpy(), self.head_format, self.hidden)
        with torch.no_grad():
            embed.copy_(torch.from_numpy(rows).to(embed.dtype))
        for i, layer in enumerate(model.model.layers):
            a, m, p = layer.self_attn, layer.mlp, self.per_layer
            inter = m.gate_proj.out_features
            views = {
                (a, "q_proj"): (p["qkv"][i], 0, self.q_size), (a, "k_proj"): (p["qkv"][i], self.q_size, self.kv_size),
                (a, "v_proj"): (p["qkv"][i], self.q_size + self.kv_size, self.kv_size),
                (a, "o_proj"): (p["o"][i], 0, self.hidden), (m, "gate_proj"): (p["gate_up"][i], 0, inter),
                (m, "up_proj"): (p["gate_up"][i], inter, inter), (m, "down_proj"): (p["down"][i], 0, self.hidden),
            }
            for (parent, name), (buf, first, out) in views.items():
                linear = getattr(parent, name)
                if type(linear) is torch.nn.Linear:
                    setattr(parent, name, QuantLinear(self.lib, buf, first, out, linear.in_features, code, isa,
                                                      scratch))
        if type(model.lm_head) is torch.nn.Linear:
            model.lm_head = QuantLinear(self.lib, self.lm_head, 0, self.vocab, self.hidden,
                                        FORMAT_CODES[self.head_format], isa, scratch)
        return sum(isinstance(mod, QuantLinear) for mod in model.modules())

    def _room(self, rows: int, columns: int, threads: int) -> None:
        """Grow what a step writes (logits, scratch, the token/position/first/greedy integers) to fit
        rows x columns; kept across steps, so a step allocates nothing (every torch call a decode step
        makes costs ~0.1 ms here: streaming the weights leaves the caches cold)."""
        fits = self._fits
        if rows <= fits[0] and columns <= fits[1] and threads <= fits[2]:
            return
        rows, columns, threads = max(rows, fits[0]), columns + max(64, columns // 4), max(threads, fits[2])
        n = self.lib.llama_scratch_floats(self._wref, rows, columns, threads)
        with torch.inference_mode(False):  # normal tensors: usable in and out of inference mode
            self._scratch = torch.empty(n, dtype=torch.float32)
            self._logits = torch.empty(rows, self.vocab_padded, dtype=torch.float32)
        self._ints = (ctypes.c_int64 * (4 * rows))()  # tokens, positions, first columns, greedy tokens
        self._fits = (rows, columns, threads)

    def decode(self, tokens: list[int], positions: list[int], first: list[int],
               keys: Seq[torch.Tensor], values: Seq[torch.Tensor], column: int) -> list[int]:
        """One decode step of len(tokens) rows: writes each row's new key and value at ``column`` and
        returns each row's greedy next token (the argmax, first on ties; ``last_logits()`` has them all).

        keys / values: per layer, the whole contiguous cache buffer [rows, kv_heads, capacity, head_dim]
        (capacity > column), all fp32 or all bfloat16 (``KV_DTYPES``); row b attends over columns first[b]..column at position positions[b].
        Buffers given as ``kvbatch.LayerBuffers`` are checked once and remembered (weakly, so they are
        not kept alive) while the same ones come back; any other sequence is checked every call."""
        # Invariant: nothing reaches the C code that could make it read or write out of bounds.
        rows = len(tokens)
        bound = self._bound
        if bound is None or bound.keys() is not keys or bound.values() is not values:
            bound = self._bind(keys, values)
        if rows != bound.shape[0] or not 0 <= column < bound.shape[2]:
            raise ValueError(f"cache buffer {bound.shape} cannot take column {column} for {rows} rows")
        if len(positions) != rows or len(first) != rows or any(not 0 <= f <= column for f in first):
            raise ValueError(f"{rows} rows need {rows} positions and first columns within 0..{column}")
        if any(not 0 <= t < self.vocab for t in tokens):
            raise ValueError(f"token id out of range 0..{self.vocab - 1}: {tokens}")
        threads = torch.get_num_threads()
        self._room(rows, column + 1, threads)
        ints, cap = self._ints, self._fits[0]
        ints[0:rows], ints[cap : cap + rows], ints[2 * cap : 2 * cap + rows] = tokens, positions, first
        at = ctypes.addressof(ints)
        self.lib.llama_decode(self._wref, rows, at, at + 8 * cap, bound.key_pointers, bound.value_pointers,
                              bound.kv_format, bound.row_stride, bound.head_stride, column, at + 16 * cap,
                              self._logits.data_ptr(), at + 24 * cap, self._scratch.data_ptr(), threads)
        self._rows = rows
        return ints[3 * cap : 3 * cap + rows]

    def last_logits(self) -> torch.Tensor:
        """Logits [rows, vocab] of the last decode step: a view, overwritten by the next step."""
        return self._logits[: self._rows, : self.vocab]

    def _bind(self, keys: Seq[torch.Tensor], values: Seq[torch.Tensor]) -> _Bound:
        """Check every layer's buffers (one shape, contiguous, one dtype of ``KV_DTYPES``, the model's
        heads) and make their pointer arrays."""
        layers = self.weights.layers
        if len(keys) != layers or len(values) != layers:
            raise ValueError(f"{len(keys)} key and {len(values)} value buffers for {layers} layers")
        k0 = keys[0]
        for buf in (*keys, *values):
            if buf.shape != k0.shape or not buf.is_contiguous() or buf.dtype != k0.dtype \
                    or buf.dtype not in KV_DTYPES.values():
                raise ValueError("native decode needs every layer's cache buffer contiguous, of one shape and "
                                 "one dtype, fp32 or bfloat16")
        shape = tuple(k0.shape)
        if len(shape) != 4 or shape[1] != self.weights.kv_heads or shape[3] != self.weights.head_dim:
            raise ValueError(f"cache buffer {shape} is not [rows, {self.weights.kv_heads} kv heads, columns, "
                             f"{self.weights.head_dim}]")
        remember = isinstance(keys, LayerBuffers) and isinstance(values, LayerBuffers)  # immutable
        refs = (weakref.ref(keys), weakref.ref(values)) if remember else None
        kv_format = FORMAT_CODES["bf16" if k0.dtype == torch.bfloat16 else "fp32"]
        bound = _Bound(*(refs or (lambda: None, lambda: None)), _pointers(keys), _pointers(values), kv_format,
                       shape, k0.stride(0), k0.stride(1))
        self._bound = bound if refs else None
        return bound

    def matmuls(self, rows: int = 1) -> None:
        """Only the weight matrix-vector products of one step (a ceiling for benchmarks)."""
        threads = torch.get_num_threads()
        self._room(rows, 1, threads)
        self._scratch.zero_()
        self.lib.llama_matmuls(self._wref, rows, self._logits.data_ptr(), self._scratch.data_ptr(), threads)


class _Bound(NamedTuple):
    """Cache buffers checked for the native step (weak references to them: the batch owns them), with
    what the C call needs of them."""

    keys: Callable[[], Any]
    values: Callable[[], Any]
    key_pointers: Any
    value_pointers: Any
    kv_format: int  # FORMAT_CODES of the buffers' dtype (quant.h's FMT_F32 / FMT_BF16)
    shape: tuple[int, ...]  # [rows, kv_heads, capacity, head_dim]
    row_stride: int
    head_stride: int


class NativeLinear(torch.nn.Module):
    """``y = x @ W.T`` (no bias) with W a view into a blocked buffer of the native step: the blocks of
    this layer start ``offset`` floats in and lie ``stride`` floats apart (inference only)."""

    def __init__(self, lib: ctypes.CDLL, buffer: torch.Tensor, offset: int, out_features: int,
                 in_features: int, stride: int) -> None:
        super().__init__()
        self.lib, self.buffer, self.offset, self.stride = lib, buffer, offset, stride
        self.in_features, self.out_features = in_features, out_features
        self.padded = (out_features + 7) // 8 * 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        y = torch.empty(rows.shape[0], self.padded, dtype=torch.float32)
        self.lib.blocked_matmul(self.buffer.data_ptr() + 4 * self.offset, self.padded, self.in_features,
                                self.stride, rows.data_ptr(), rows.shape[0], y.data_ptr(),
                                torch.get_num_threads())
        if self.padded != self.out_features:
            y = y[:, : self.out_features]
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, native blocked"


class _Scratch:
    """A byte buffer that grows to the largest request and is kept: the VNNI path's int8 activations
    for QuantLinear (a buffer allocated per call cost page faults, ~5 % of a prefill)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib, self.buf = lib, torch.empty(0, dtype=torch.uint8)

    def get(self, rows: int, k: int) -> tuple[int, int]:
        need = self.lib.quant_qx_bytes(rows, k)
        if need > self.buf.numel():
            self.buf = torch.empty(need, dtype=torch.uint8)
        return self.buf.data_ptr(), self.buf.numel()


class QuantLinear(torch.nn.Module):
    """``y = x @ W.T`` (no bias) with W rows first..first + out_features of a quantized / bf16 matrix of
    the native step (``buffer``: [rows, row_bytes] uint8, format ``code`` of quant.h; inference only;
    ``scratch``: where the VNNI path's int8 activations go, shared by the layers of one model)."""

    def __init__(self, lib: ctypes.CDLL, buffer: torch.Tensor, first: int, out_features: int,
                 in_features: int, code: int, isa: int, scratch: _Scratch | None = None) -> None:
        super().__init__()
        self.lib, self.buffer, self.code, self.isa = lib, buffer, code, isa
        self.scratch = scratch or _Scratch(lib)
        self.in_features, self.out_features = in_features, out_features
        self.offset = first * buffer.shape[1]  # bytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        y = torch.empty(rows.shape[0], self.out_features, dtype=torch.float32)
        self.lib.quant_matmul(self.code, self.isa, self.buffer.data_ptr() + self.offset, self.out_features,
                              self.in_features, rows.data_ptr(), rows.shape[0], y.data_ptr(),
                              torch.get_num_threads(), *self.scratch.get(rows.shape[0], self.in_features))
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        fmt = next(k for k, v in FORMAT_CODES.items() if v == self.code)
        return f"in_features={self.in_features}, out_features={self.out_features}, native {fmt}"


def _check(model: Any, config: Any) -> None:
    """Raise NativeUnavailable unless the model is a plain Llama the C step computes exactly."""
    def no(why: str) -> NativeUnavailable:
        return NativeUnavailable(f"native decode covers plain Llama models in fp32 on the CPU: {why}")

    if getattr(config, "model_type", None) != "llama":
        raise no(f"model type is {getattr(config, 'model_type', None)!r}")
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "attention_bias", False) \
            or getattr(config, "mlp_bias", False):
        raise no("activation is not SiLU or the layers have biases")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ROPE_TYPES:
        raise no(f"rotary type {rope.get('rope_type')!r} is not one of {ROPE_TYPES}")
    try:
        attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
        head_dim, rotary = attn.head_dim, model.model.rotary_emb
        linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj,
                   mlp.down_proj, model.lm_head]
    except AttributeError as exc:
        raise no(f"unexpected module layout ({exc})") from exc
    if any(type(m) is not torch.nn.Linear for m in linears):
        raise no("its projections are not plain Linear layers (build the native step before packing)")
    weight = model.lm_head.weight
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        raise no(f"weights are {weight.dtype} on {weight.device}")
    if rotary.inv_freq.numel() * 2 != head_dim:
        raise no("partial rotary embeddings")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    if config.hidden_size % 8 or config.intermediate_size % 8 or head_dim % 8 or heads % kv_heads:
        raise no("hidden, intermediate and head sizes must be multiples of 8")


_built: weakref.WeakKeyDictionary[Any, dict[str, tuple[NativeLlama | None, str | None]]] = \
    weakref.WeakKeyDictionary()


def for_model(model: Any, weights: str | None = "fp32", gguf: str | os.PathLike[str] | None = None,
              ) -> tuple[NativeLlama | None, str | None]:
    """The native step for this model in this weight format (None: as ``NativeLlama`` chooses), or
    (None, why not); one per model object and format, however many engines share it (the first
    engine packs the model's layers, after which no step of another format could be built)."""
    made = _built.setdefault(model, {})
    key = weights or "auto"
    if key not in made:
        try:
            step = NativeLlama(model, weights, gguf)
            made[key] = made[step.format] = step, None  # auto: also the format it chose
        except NativeUnavailable as exc:
            made[key] = None, str(exc)
    return made[key]


__all__ = ["NativeLinear", "NativeLlama", "NativeUnavailable", "QuantLinear", "best_isa", "blocked",
           "for_model", "library"]
