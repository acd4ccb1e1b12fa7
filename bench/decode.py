"""Single-stream decode speed against the memory-bandwidth bound, and fp32 against bf16.

A decode step reads every weight once, so one stream can go no faster than
    bound tok/s = read bandwidth / weight bytes = 1 / (time to read the weights once).
This machine's memory bandwidth drifts by a third within seconds (other tenants), so the bound is
measured step by step: every single-stream decode step is followed at once by reading a buffer of
the weights' size from memory, and by the step's weight matmuls alone ("matmuls only": the native
step's for fp32, PyTorch's otherwise). The read is the fastest of five ways, chosen beforehand by
median time (torch's sum; the native library's streaming read with 1, 2, 4 and 8 concurrent streams
per thread), then timed once per step like the step itself. "of bound" is the median over steps of
read time / step time; the other columns are medians over the same steps.
Rows: fp32 (the default) and bf16; columns: single-stream tok/s through HFEngine (prefill excluded),
the same engine with the native step turned off (transformers forward, oneDNN-packed layers), plain
transformers (a bare forward loop), the read rate and the bound, the matmul ceiling and the fraction
of it reached, and the aggregate tok/s of a 16-sequence batch (why fp32 is the default on CPUs
without native bf16).

With --batched ROWS (e.g. 32) it instead splits one native decode step of ROWS rows of the shipped
q4_1 weights into its weight products ("matmuls only") and the rest (attention over the cache, norms,
rotary: "step - matmuls"), at 8, 128 and 1,024 cache columns, with an fp32 and a bf16 KV cache, on
the best instruction set here and (where that is above AVX2) on AVX2 (the attention's tiles and the
products both), interleaved over 10 rounds (medians, the spread, and each step's speed against the
fp32 cache's on the best set at the same columns): where a batched step's time goes as contexts grow.
With --threads 1 it also prints the step's CPU time (the least of the rounds): on a busy machine,
wall time counts the time other processes held the core, and CPU time does not.

With --kv-match TOKENS it compares greedy text (TOKENS new tokens, one stream) of a bf16 KV cache
against an fp32 one on the same weights: bench/weights.py's ten chat questions, and four of them
after a ~1,000-token story; it prints how many match and where the others first differ.

Usage: python bench/decode.py [--quick] [--tokens N] [--context N] [--batched ROWS] [--kv-match TOKENS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import Plain, add_threads_flag, decode_rate, load_engine, on_model_thread, prompt, seq, table
from torch import nn
from transformers import DynamicCache

from llmasos.engine import native
from llmasos.engine.packed import PackedLinear


def readers(nbytes: int):
    """Callables that each read a buffer of nbytes once from memory, in different ways."""
    buf = torch.ones(nbytes // 4, dtype=torch.float32)
    huge = native.huge_empty(nbytes // 4).fill_(1.0)  # where the native step keeps its weights
    ways = {"torch sum": buf.sum, "torch sum, huge pages": huge.sum}
    try:
        lib, threads = native.library(), torch.get_num_threads()
        for n in (1, 2, 4, 8):
            for name, b in (("", buf), (", huge pages", huge)):
                ways[f"{n}-stream read{name}"] = lambda n=n, b=b: lib.stream_read(b.data_ptr(), b.numel(), threads, n)
    except native.NativeUnavailable:
        pass
    return ways


def matmuls_once(engine):
    """A callable running one token's weight matmuls alone, with the kernels the engine decodes with."""
    if engine.native is not None:
        return lambda: engine.native.matmuls(1)
    layers = [m for m in engine.model.modules() if isinstance(m, (nn.Linear, PackedLinear))]
    dtype = next(engine.model.parameters()).dtype
    inputs = [torch.randn(1, m.in_features, dtype=dtype) for m in layers]

    @torch.inference_mode()
    def run() -> None:
        for m, x in zip(layers, inputs, strict=True):
            m(x)

    return run


def fastest(ways: dict, rounds: int = 7) -> tuple[str, object]:
    """(name, way) with the lowest median time over rounds interleaved runs (after a warm-up run).

    Per step, only that way is timed, once, as the step is: the minimum of several ways each step
    would compare a best-of-N against a single sample and understate the bound's time."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds + 1):
        for name, way in ways.items():
            times[name].append(seconds(way))
    best = min(ways, key=lambda name: statistics.median(times[name][1:]))
    return best, ways[best]


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def long_prompt(engine, n: int) -> str:
    """Story openings one after another, until the text is at least n tokens long."""
    text, i = "", 0
    while engine.count_tokens(text) < n:
        text += prompt(i) + " "
        i += 1
    return text


@on_model_thread
def paired_steps(engine, weight_bytes: int, tokens: int,
                 context: int | None = None) -> tuple[list[tuple[float, float, float]], str]:
    """(step, read, matmuls) seconds for each decode step of one stream, measured back to back,
    and which read was the fastest. context: the prompt's length in tokens (default ~30)."""
    matmuls = matmuls_once(engine)
    how, read = fastest(readers(weight_bytes))
    s = seq(0, tokens + 1)
    if context:
        s.prompt = long_prompt(engine, context)
    engine.prepare(s)
    while not s.output_ids:  # prefill (and the first token) off the clock
        engine.step([s])
    out = []
    done = False
    while not done:
        t0 = time.perf_counter()
        events = engine.step([s])
        step = time.perf_counter() - t0
        done = bool(events[0].finish_reason)
        out.append((step, seconds(read), seconds(matmuls)))
    engine.abort(s)
    return out, how


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
@on_model_thread
def batched_split(rows: int, threads: int | None, rounds: int = 10) -> None:
    """Print the --batched table (see the module docstring)."""
    from llmasos.engine.hf import _gguf_source
    from llmasos.engine.kvbatch import KV_DTYPES, LayerBuffers

    engine = load_engine(threads, ignore_eos=True, pack_weights=False)  # (unpacked: a second step can be built)
    best = engine.native
    steps = {best.isa: best}
    if best.isa not in ("scalar", "avx2"):  # the attention's AVX2 tiles too (its products on AVX2 as well)
        steps["avx2"] = native.NativeLlama(engine.model, best.format, _gguf_source("smollm2-135m"), isa="avx2")
    w = best.weights
    caches = {(cols, kv): [LayerBuffers(torch.zeros(rows, w.kv_heads, cols, w.head_dim, dtype=KV_DTYPES[kv])
                                        for _ in range(w.layers)) for _ in range(2)]
              for cols in (8, 128, 1024) for kv in KV_DTYPES}
    arms = [(cols, kv, isa) for cols, kv in caches for isa in steps]
    times: dict[tuple[int, str, str], tuple[list[float], ...]] = {arm: ([], [], [], []) for arm in arms}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for cols, kv, isa in arms:
            (keys, values), step, col = caches[cols, kv], steps[isa], cols - 1
            for i, run in enumerate((lambda k=keys, v=values, c=col, s=step: s.decode(
                    list(range(1, rows + 1)), [c] * rows, [0] * rows, k, v, c), lambda s=step: s.matmuls(rows))):
                cpu = time.thread_time()
                times[cols, kv, isa][i].append(seconds(run))
                times[cols, kv, isa][2 + i].append(time.thread_time() - cpu)
        loads.append(os.getloadavg()[0])
    med = statistics.median
    one = torch.get_num_threads() == 1  # the step runs on this thread alone: its CPU time is the step's
    out = []
    for (cols, kv, isa), (a, m, ca, cm) in times.items():
        base = med(times[cols, "fp32", best.isa][0])
        row = [cols, kv, isa, 1e3 * med(a), f"{1e3 * min(a):.1f}-{1e3 * max(a):.1f}", 1e3 * med(m),
               1e3 * (med(a) - med(m)), rows / med(a), base / med(a)]
        if one:
            row += [1e3 * min(ca), 1e3 * (min(ca) - min(cm)), min(times[cols, "fp32", best.isa][2]) / min(ca)]
        out.append(row)
    print(f"\nbatched step: {rows} rows, {best.format} weights, {torch.get_num_threads()} threads, {rounds} "
          f"interleaved rounds (medians; spread min-max); load (1-min) {min(loads):.2f}-{max(loads):.2f}")
    headers = ["cache columns", "KV", "ISA", "step ms", "spread ms", "matmuls only ms", "step - matmuls ms",
               "tok/s", f"x fp32 KV on {best.isa}"]
    if one:  # CPU time does not count the time other processes held the core (the fewest of the rounds)
        headers += ["step CPU ms", "step - matmuls CPU ms", f"CPU: x fp32 KV on {best.isa}"]
    print(table(headers, out))


@on_model_thread
def kv_match(tokens: int, threads: int | None) -> None:
    """Print the --kv-match table (see the module docstring)."""
    from weights import QUESTIONS

    from llmasos.engine.base import SamplingParams, Sequence
    from llmasos.engine.hf import HFEngine

    bf16 = load_engine(threads, kv_dtype="bf16")
    fp32 = HFEngine(bf16.model, bf16.tokenizer, name=bf16.name, weights=bf16.weights, kv_dtype="fp32")
    story = long_prompt(bf16, 1000)
    sets = {"short (chat questions)": [[{"role": "user", "content": q}] for q in QUESTIONS],
            "~1,000-token context": [[{"role": "user", "content": f"{story}\n\n{q}"}] for q in QUESTIONS[:4]]}
    rows = []
    for name, prompts in sets.items():
        outs = {}
        for engine in (fp32, bf16):
            outs[engine.kv_dtype] = []
            for messages in prompts:
                s = Sequence(pid=0, params=SamplingParams(max_tokens=tokens), messages=messages)
                engine.prepare(s)
                while not s.finish_reason:
                    engine.step([s])
                engine.abort(s)
                outs[engine.kv_dtype].append(s.output_ids)
        pairs = list(zip(outs["fp32"], outs["bf16"], strict=True))
        same = sum(a == b for a, b in pairs)
        first = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) for a, b in pairs
                 if a != b]
        rows.append([name, len(prompts), bf16.weights, f"{same}/{len(prompts)}",
                     ", ".join(map(str, first)) or "-"])
    print(f"\nKV cache bf16 against fp32: greedy, up to {tokens} new tokens, one stream, "
          f"{torch.get_num_threads()} threads")
    print(table(["prompts", "n", "weights", "greedy = fp32 KV", "first differing token (others)"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="24 decode steps per measurement instead of 96")
    ap.add_argument("--tokens", type=int, default=None, help="decode steps per measurement")
    ap.add_argument("--context", type=int, default=None,
                    help="prompt length in tokens for the paired single-stream columns (1-stream, of "
                         "bound, of matmuls; default ~30); the bound counts the weights only, so a long "
                         "context, whose cache is read too, lowers 'of bound'")
    ap.add_argument("--batched", type=int, default=None, metavar="ROWS",
                    help="split a batched step of ROWS rows into matmuls and the rest instead")
    ap.add_argument("--kv-match", type=int, default=None, metavar="TOKENS",
                    help="compare greedy text of a bf16 and an fp32 KV cache instead (TOKENS new tokens)")
    add_threads_flag(ap)
    args = ap.parse_args()
    if args.kv_match:
        kv_match(args.kv_match, args.threads)
        return
    if args.batched:
        batched_split(args.batched, args.threads)
        return
    tokens = args.tokens or (24 if args.quick else 96)
    rows, steps = [], []
    for dtype in ("float32", "bfloat16"):
        plain = Plain(dtype)
        weight_bytes = plain.weight_bytes()
        bare = plain_rate(plain.model, tokens)
        del plain
        engine = load_engine(args.threads, dtype=dtype, ignore_eos=True, weights="fp32")  # the fp32 bound
        steps.append(f"{dtype}: " + ("native" if engine.native else f"transformers ({engine.native_reason})"))
        torch_path = load_engine(args.threads, dtype=dtype, ignore_eos=True, native_decode=False)
        hf_one = decode_rate(torch_path, 1, tokens)
        torch_path.close()
        del torch_path
        decode_rate(engine, 1, 4)  # warm up
        pairs, how = paired_steps(engine, weight_bytes, tokens, args.context)
        med = statistics.median
        one, bound, ceiling = med(1 / p[0] for p in pairs), med(1 / p[1] for p in pairs), med(1 / p[2] for p in pairs)
        batch = decode_rate(engine, 16, tokens // 2)
        steps[-1] += f", read: {how}"
        rows.append([dtype, weight_bytes / 2**20, one, hf_one, bare, bound * weight_bytes / 2**30, bound,
                     med(r / st for st, r, _ in pairs), ceiling, med(m / st for st, _, m in pairs), batch])
        engine.close()
    where = f" after a {args.context}-token prompt" if args.context else ""
    print(f"\ndecode: {torch.get_num_threads()} threads, {tokens} single-stream steps per row{where}; decode step: "
          + "; ".join(steps))
    headers = ["dtype", "weights MiB", "1-stream tok/s", "no-native tok/s", "plain HF tok/s", "read GiB/s",
               "bandwidth bound", "of bound", "matmuls only", "of matmuls", "batch-16 tok/s"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
