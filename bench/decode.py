"""Single-stream decode speed against the memory-bandwidth bound, and fp32 against bf16.

A decode step reads every weight once, so one stream can go no faster than
    bound tok/s = measured read bandwidth / weight bytes.
Read bandwidth is measured here: the best of several full reads of a 1 GiB tensor (well beyond the
caches), by torch's sum and by the native library's streaming read, whichever is faster, right before
and right after each single-stream run (this machine's bandwidth drifts; the higher reading is used,
so the bound is never flattered); "of bound" is the median over --rounds such runs of the stream's
rate against the bound read around it. A second ceiling: the model's weight matmuls alone, one token,
nothing else ("matmuls only"), with the kernels the engine's decode uses (the native step's for fp32,
PyTorch's otherwise).
Rows: fp32 (the default) and bf16; columns: single-stream tok/s through HFEngine (prefill excluded),
the same engine with the native step turned off (transformers forward, oneDNN-packed layers), plain
transformers (a bare forward loop), the ceilings and the fraction of each the engine reaches, and the
aggregate tok/s of a 16-sequence batch (which is why fp32 is the default on CPUs without native bf16).

Usage: python bench/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import Plain, add_threads_flag, load_engine, on_model_thread, seq, table
from torch import nn
from transformers import DynamicCache

from llmasos.engine import native
from llmasos.engine.packed import PackedLinear


@on_model_thread
def read_bandwidth(gib: float = 1.0, reps: int = 5) -> float:
    """Bytes per second read from memory: the better of torch's sum and the native streaming read."""
    x = torch.ones(int(gib * 2**30 / 4), dtype=torch.float32)
    x.sum()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    rate = x.numel() * 4 / best
    del x
    try:
        return max(rate, native.read_bandwidth(gib, reps))
    except native.NativeUnavailable:
        return rate


@on_model_thread
@torch.inference_mode()
def matmul_ceiling(engine, reps: int = 5) -> float:
    """Tokens/s if a decode step did nothing but its weight matmuls (batch 1, the engine's kernels)."""
    best = float("inf")
    if engine.native is not None:
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            engine.native.matmuls(1)
            best = min(best, time.perf_counter() - t0)
        return 1 / best
    model = engine.model
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, PackedLinear))]
    dtype = next(model.parameters()).dtype
    inputs = [torch.randn(1, m.in_features, dtype=dtype) for m in layers]
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
    ap.add_argument("--rounds", type=int, default=3,
                    help="single-stream runs, each between two bandwidth readings; medians are printed")
    add_threads_flag(ap)
    args = ap.parse_args()
    tokens = 32 if args.quick else 96
    rows, steps, detail = [], [], []
    for dtype in ("float32", "bfloat16"):
        plain = Plain(dtype)
        weight_bytes = plain.weight_bytes()
        bare = plain_rate(plain.model, tokens)
        del plain
        engine = load_engine(args.threads, dtype=dtype, ignore_eos=True)
        steps.append(f"{dtype}: " + ("native" if engine.native else f"transformers ({engine.native_reason})"))
        torch_path = load_engine(args.threads, dtype=dtype, ignore_eos=True, native_decode=False)
        hf_one = decode_rate(torch_path, 1, tokens)
        torch_path.close()
        del torch_path
        ceiling = matmul_ceiling(engine)
        decode_rate(engine, 1, 4)  # warm up
        rounds = []  # (tok/s, read bandwidth around it): the bound is taken round by round
        for _ in range(args.rounds):
            bw = read_bandwidth()
            one = decode_rate(engine, 1, tokens)
            rounds.append((one, max(bw, read_bandwidth())))
        one, bw = statistics.median(r for r, _ in rounds), statistics.median(b for _, b in rounds)
        of_bound = statistics.median(r * weight_bytes / b for r, b in rounds)
        batch = decode_rate(engine, 16, tokens // 2)
        detail.append(f"{dtype} rounds (tok/s, of bound): "
                      + ", ".join(f"({r:.1f}, {r * weight_bytes / b:.2f})" for r, b in rounds))
        rows.append([dtype, weight_bytes / 2**20, one, hf_one, bare, bw / 2**30, bw / weight_bytes, of_bound,
                     ceiling, one / ceiling, batch])
        engine.close()
    print(f"\ndecode: {torch.get_num_threads()} threads; decode step: " + "; ".join(steps))
    headers = ["dtype", "weights MiB", "1-stream tok/s", "no-native tok/s", "plain HF tok/s", "read GiB/s",
               "bandwidth bound", "of bound", "matmuls only", "of matmuls", "batch-16 tok/s"]
    print(table(headers, rows))
    print("\n".join(detail))


if __name__ == "__main__":
    main()
