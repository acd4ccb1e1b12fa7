"""Single-stream decode speed against the memory-bandwidth bound, and fp32 against bf16.

A decode step reads every weight once, so one stream can go no faster than
    bound tok/s = measured read bandwidth / weight bytes.
Read bandwidth is measured here (best of several full reads of a 1 GiB tensor, well beyond the caches).
A second ceiling: the model's weight matmuls alone, one token, nothing else ("matmuls only"), with the
same kernels the engine uses; it shows how much of the bandwidth PyTorch's matrix-vector kernels
reach on this machine, and so what is left for the engine's own overhead to lose.
Rows: fp32 (the default) and bf16; columns: single-stream tok/s through HFEngine (prefill excluded),
the same through plain transformers (a bare forward loop), the two ceilings and the fraction of each
the engine reaches, and the aggregate tok/s of a 16-sequence batch (which is why fp32 is the default
on CPUs without native bf16).

Usage: python bench/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import Plain, add_threads_flag, load_engine, on_model_thread, seq, table
from torch import nn
from transformers import DynamicCache

from llmasos.engine.packed import PackedLinear


@on_model_thread
def read_bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Bytes per second that torch reads from memory (sum over a large fp32 tensor)."""
    x = torch.ones(int(gib * 2**30 / 4), dtype=torch.float32)
    x.sum()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best


@on_model_thread
@torch.inference_mode()
def matmul_ceiling(model: nn.Module, reps: int = 5) -> float:
    """Tokens/s if a decode step did nothing but its weight matmuls (batch 1, the model's own layers)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, PackedLinear))]
    dtype = next(model.parameters()).dtype
    inputs = [torch.randn(1, m.in_features, dtype=dtype) for m in layers]
    best = float("inf")
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for m, x in zip(layers, inputs):
            m(x)
        best = min(best, time.perf_counter() - t0)
    return 1 / best


@on_model_thread
@torch.inference_mode()
def plain_rate(model: nn.Module, tokens: int) -> float:
    """Single-stream tok/s of a bare transformers forward loop (greedy, DynamicCache)."""
    ids = torch.tensor([[1] * 30])
    out = model(input_ids=ids, cache=DynamicCache(), use_cache=True, logits_to_keep=1)
    cache = out.cache
    t0 = time.perf_counter()
    for _ in range(tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
    return tokens / (time.perf_counter() - t0)


@on_model_thread
def decode_rate(engine, n: int, tokens: int) -> float:
    """Aggregate decode tok/s of n sequences after their prefill."""
    seqs = [seq(i, tokens + 1) for i in range(n)]
    for s in seqs:
        engine.prepare(s)
    while not all(s.output_ids for s in seqs):  # prefill (and the first token) off the clock
        engine.step(seqs)
    t0 = time.perf_counter()
    produced = 0
    active = list(seqs)
    while active:
        for e in engine.step(active):
            produced += 1
            if e.finish_reason:
                active.remove(e.seq)
                engine.abort(e.seq)
    return produced / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 tokens per measurement instead of 96")
    add_threads_flag(ap)
    args = ap.parse_args()
    tokens = 32 if args.quick else 96
    bw = read_bandwidth()
    rows = []
    for dtype in ("float32", "bfloat16"):
        plain = Plain(dtype)
        weight_bytes = plain.weight_bytes()
        bound = bw / weight_bytes
        bare = plain_rate(plain.model, tokens)
        del plain
        engine = load_engine(args.threads, dtype=dtype, ignore_eos=True)
        ceiling = matmul_ceiling(engine.model)
        decode_rate(engine, 1, 4)  # warm up
        one = decode_rate(engine, 1, tokens)
        batch = decode_rate(engine, 16, tokens // 2)
        rows.append([dtype, weight_bytes / 2**20, one, bare, bound, one / bound, ceiling, one / ceiling,
                     batch])
        engine.close()
    print(f"\ndecode: measured read bandwidth {bw / 2**30:.1f} GiB/s, {torch.get_num_threads()} threads; "
          f"engine layers packed for oneDNN where fp32")
    headers = ["dtype", "weights MiB", "1-stream tok/s", "plain HF tok/s", "bandwidth bound",
               "of bound", "matmuls only", "of matmuls", "batch-16 tok/s"]
    print(table(headers, rows))

if __name__ == "__main__":
    main()
