"""Single-stream decode speed against the memory-bandwidth bound, and fp32 against bf16.

A decode step reads every weight once, so one stream can go no faster than
    bound tok/s = measured read bandwidth / weight bytes.
Read bandwidth is measured here (best of several full reads of a 1 GiB tensor, well beyond the caches).
Rows: fp32 (the default) and bf16; columns: single-stream tok/s through HFEngine (prefill excluded),
the bound, the fraction of the bound reached, and the aggregate tok/s of a 16-sequence batch (which
is why fp32 is the default on CPUs without native bf16).

Usage: python bench/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import add_threads_flag, load_engine, seq, table


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
        engine = load_engine(args.threads, dtype=dtype, ignore_eos=True)
        weight_bytes = sum(p.numel() * p.element_size() for p in engine.model.parameters())
        bound = bw / weight_bytes
        decode_rate(engine, 1, 4)  # warm up
        one = decode_rate(engine, 1, tokens)
        batch = decode_rate(engine, 16, tokens // 2)
        rows.append([dtype, weight_bytes / 2**20, one, bound, one / bound, batch])
        engine.close()
    print(f"\ndecode: measured read bandwidth {bw / 2**30:.1f} GiB/s, {torch.get_num_threads()} threads")
    headers = ["dtype", "weights MiB", "1-stream tok/s", "bound tok/s", "of bound", "batch-16 tok/s"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
