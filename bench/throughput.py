"""Aggregate throughput of N concurrent generations: continuous batching vs serial vs static batching.

Each of N requests generates exactly 64 tokens greedily (EOS ignored) from a ~30-token prompt.
Columns (aggregate generated tokens per second, wall clock from first request to last token):
  llmasos   N processes each calling sys.generate through the kernel (or, with --driver loop or
            without a kernel, the engine + FIFO scheduler driven by a bare loop)
  serial    the same N requests one at a time through HF `generate` (batch 1)
  static    one HF `generate` call on a left-padded batch of all N prompts
  hf-cb     transformers' own continuous batching (`generate_batch`), with --hf-cb
The baselines run on a second, plain transformers copy of the model; the engine decodes through its
native step (engine/native.py) and prefills on Linear layers packed for oneDNN (engine/packed.py);
--no-pack runs the engine on plain layers with the native step off, the very kernels the baselines
use, which separates what batching does from what the faster kernels do.
Targets at N=32: llmasos >= 0.9x static and >= 9x serial.
--kv-compare adds the same engine on an fp32 KV cache (the other column is bf16), interleaved with it,
and the ratio bf16 / fp32.

Usage: python bench/throughput.py [--quick] [--driver kernel|loop] [--hf-cb] [--no-pack] [--kv-compare]
       [--repeat R] [--threads T]
"""

from __future__ import annotations

import argparse
import sys
import time

import anyio
import torch
from _common import (
    Plain, add_threads_flag, drive_loop, kernel_available, load_engine, new_kernel, on_model_thread, prompt, seq,
    table,
)

NEW = 64


def run_llmasos(engine, n: int, driver: str) -> float:
    if driver == "loop":
        seqs = [seq(i, NEW) for i in range(n)]
        t0 = time.perf_counter()
        drive_loop(engine, seqs)
        elapsed = time.perf_counter() - t0
        assert all(len(s.output_ids) == NEW for s in seqs)
        return n * NEW / elapsed
    from llmasos.apps.app import App

    app = App("bench-gen", "throughput benchmark request")

    @app.main
    async def main(sys, i: int) -> int:
        reply = await sys.generate(prompt(i), max_tokens=NEW)
        return reply.completion_tokens

    async def go() -> float:
        async with new_kernel(engine, max_batch=max(n, 1)) as kernel:
            t0 = time.perf_counter()
            pids = [await kernel.spawn(app, i) for i in range(n)]
            results = [await kernel.wait(pid) for pid in pids]
            elapsed = time.perf_counter() - t0
        assert all(r.value == NEW for r in results), results
        return n * NEW / elapsed

    return anyio.run(go)


def encode(plain, n: int) -> dict:
    tok = plain.tokenizer
    tok.padding_side = "left"
    return tok([prompt(i) for i in range(n)], return_tensors="pt", padding=True)


@on_model_thread
@torch.inference_mode()
def run_static(plain, n: int) -> float:
    batch = encode(plain, n)
    t0 = time.perf_counter()
    out = plain.model.generate(**batch, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                                pad_token_id=plain.tokenizer.pad_token_id)
    elapsed = time.perf_counter() - t0
    assert out.shape[1] - batch["input_ids"].shape[1] == NEW
    return n * NEW / elapsed


@on_model_thread
@torch.inference_mode()
def run_serial(plain, n: int, sample: int) -> tuple[float, int]:
    """Serial tok/s, timing min(n, sample) requests one by one (the rate does not depend on n)."""
    k = min(n, sample)
    t0 = time.perf_counter()
    for i in range(k):
        batch = plain.tokenizer([prompt(i)], return_tensors="pt")
        plain.model.generate(**batch, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                              pad_token_id=plain.tokenizer.pad_token_id)
    return k * NEW / (time.perf_counter() - t0), k


@on_model_thread
@torch.inference_mode()
def run_hf_cb(plain, n: int) -> float:
    from transformers import GenerationConfig

    inputs = [plain.tokenizer.encode(prompt(i)) for i in range(n)]
    config = GenerationConfig(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, eos_token_id=-1,
                              pad_token_id=plain.tokenizer.pad_token_id, max_batch_tokens=512)
    t0 = time.perf_counter()
    out = plain.model.generate_batch(inputs=inputs, generation_config=config, progress_bar=False)
    elapsed = time.perf_counter() - t0
    produced = sum(len(r.generated_tokens) for r in out.values())
    return produced / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="time serial on 2 requests per N, not all N")
    ap.add_argument("--driver", choices=["kernel", "loop"], default=None)
    ap.add_argument("--hf-cb", action="store_true", help="also time transformers' generate_batch")
    ap.add_argument("--no-pack", action="store_true", help="engine on plain Linear layers with the native step off: the baselines' kernels")
    ap.add_argument("--sizes", default="1,4,16,32")
    ap.add_argument("--repeat", type=int, default=2,
                    help="run llmasos and static this many times, interleaved, and keep the best of each")
    ap.add_argument("--kv-compare", action="store_true",
                    help="llmasos on a bf16 and on an fp32 KV cache (one model), interleaved")
    add_threads_flag(ap)
    args = ap.parse_args()
    driver = args.driver or ("kernel" if kernel_available() else "loop")
    kv = {"kv_dtype": "bf16"} if args.kv_compare else {}
    engine = load_engine(args.threads, max_batch=64, ignore_eos=True, pack_weights=not args.no_pack,
                         native_decode=not args.no_pack, **kv)
    fp32_kv = fp32_kv_twin(engine) if args.kv_compare else None
    plain = Plain()
    run_static(plain, 2)  # warm up
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        ours = static = twin = 0.0
        for _ in range(args.repeat):  # interleaved, so a busy spell on the machine hits both
            ours = max(ours, run_llmasos(engine, n, driver))
            if fp32_kv is not None:
                twin = max(twin, run_llmasos(fp32_kv, n, driver))
            static = max(static, run_static(plain, n))
        serial, k = run_serial(plain, n, 2 if args.quick else n)
        row = [n, ours, serial, static, ours / serial, ours / static]
        if fp32_kv is not None:
            row += [twin, ours / twin]
        if args.hf_cb:
            cb = run_hf_cb(plain, n)
            row += [cb, ours / cb]
        rows.append(row)
        print(f"# N={n} done (serial timed on {k} requests)", file=sys.stderr)
    headers = ["N", f"llmasos ({driver}) tok/s", "serial tok/s", "static tok/s", "vs serial", "vs static"]
    if fp32_kv is not None:
        headers[1] = f"llmasos ({driver}, bf16 KV) tok/s"
        headers += ["llmasos fp32 KV tok/s", "bf16 / fp32 KV"]
    if args.hf_cb:
        headers += ["hf-cb tok/s", "vs hf-cb"]
    print(f"\nthroughput: {NEW} new tokens per request, greedy, ~30-token prompts, baselines fp32, llmasos "
          f"{getattr(engine, 'weights', 'fp32')} (KV {getattr(engine, 'kv_dtype', 'fp32')}), "
          f"{torch.get_num_threads()} threads, best of {args.repeat} for llmasos and static; "
          f"engine: {'plain layers, no native step' if args.no_pack else engine_kernels(engine)}")
    print(table(headers, rows))


@on_model_thread
def fp32_kv_twin(engine):
    """The same model and weights served by a second engine on an fp32 KV cache."""
    from llmasos.engine.hf import HFEngine

    return HFEngine(engine.model, engine.tokenizer, name=engine.name, max_batch=64, ignore_eos=True,
                    weights=engine.weights, kv_dtype="fp32")


def engine_kernels(engine) -> str:
    if engine.native:
        return f"native decode step, {engine.packed_layers} Linear layers on its weights for prefill"
    return f"transformers decode ({engine.native_reason}), {engine.packed_layers} layers packed for oneDNN"


if __name__ == "__main__":
    main()
