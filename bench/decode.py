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
rotary: "step - matmuls"), at 8, 128 and 1,024 cache columns, interleaved over 10 rounds (medians):
where a batched step's time goes as contexts grow.

Usage: python bench/decode.py [--quick] [--tokens N] [--context N] [--batched ROWS]
"""

from __future__ import annotations

import argparse
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
def batched_split(rows: int, threads: int | None) -> None:
    """Print the --batched table (see the module docstring)."""
    from llmasos.engine.kvbatch import LayerBuffers

    engine = load_engine(threads, ignore_eos=True)
    step, w = engine.native, engine.native.weights
    caches = {cols: [LayerBuffers(torch.zeros(rows, w.kv_heads, cols, w.head_dim) for _ in range(w.layers))
                     for _ in range(2)] for cols in (8, 128, 1024)}
    times: dict[int, tuple[list[float], list[float]]] = {cols: ([], []) for cols in caches}
    for _ in range(10):
        for cols, (keys, values) in caches.items():
            col = cols - 1
            times[cols][0].append(seconds(lambda k=keys, v=values, c=col: step.decode(
                list(range(1, rows + 1)), [c] * rows, [0] * rows, k, v, c)))
            times[cols][1].append(seconds(lambda: step.matmuls(rows)))
    med = statistics.median
    out = [[cols, 1e3 * med(a), 1e3 * med(m), 1e3 * (med(a) - med(m)), rows / med(a)]
           for cols, (a, m) in times.items()]
    print(f"\nbatched step: {rows} rows, {step.format} weights on {step.isa}, {torch.get_num_threads()} threads, "
          "10 interleaved rounds (medians)")
    print(table(["cache columns", "step ms", "matmuls only ms", "step - matmuls ms", "tok/s"], out))


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
    add_threads_flag(ap)
    args = ap.parse_args()
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
