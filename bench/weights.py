"""Decode speed and quality of each weight format of the native step, on the default model.

Formats: fp32 (blocked, the baseline), q4_1 (the GGUF's own blocks, embedding Q8_0 as shipped), q8_0,
bf16. For each, in one process and interleaved (round r measures every format before round r + 1):
aggregate decode tok/s of 1 and of 32 streams (~30-token prompts, prefill off the clock), and right
after each format's 1-stream run the machine's read bandwidth (the native library's streaming read
of a 0.5 GiB buffer), since it swings within minutes here. Medians over the rounds with min-max.
Quality: perplexity of each format's model on a fixed English text, twice: through its prefill path
(the same blocks, fp32 activations) and through the native decode step itself, teacher-forced one
token a step (the activations the step uses: int8 on the VNNI path, its KV cache dtype), and the share
of a fixed prompt set whose 32 greedy tokens equal fp32's. LLMASOS_NATIVE_ISA=avx512 runs the same on
fp32 activations, for comparison.

Usage: python bench/weights.py [--rounds 3] [--tokens 48] [--threads N] [--formats q4_1,fp32]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from _common import add_threads_flag, decode_rate, load_engine, on_model_thread, table

from llmasos.engine import native
from llmasos.engine.base import SamplingParams, Sequence
from llmasos.engine.kvbatch import KV_DTYPES, LayerBuffers
from llmasos.engine.quant import WEIGHT_FORMATS

TEXT = (  # fixed text for perplexity (public domain: the opening of Jerome K. Jerome's Three Men in a Boat)
    "There were four of us - George, and William Samuel Harris, and myself, and Montmorency. We were "
    "sitting in my room, smoking, and talking about how bad we were - bad from a medical point of view "
    "I mean, of course. We were all feeling seedy, and we were getting quite nervous about it. Harris "
    "said he felt such extraordinary fits of giddiness come over him at times, that he hardly knew what "
    "he was doing; and then George said that he had fits of giddiness too, and hardly knew what he was "
    "doing. With me, it was my liver that was out of order. I knew it was my liver that was out of "
    "order, because I had just been reading a patent liver-pill circular, in which were detailed the "
    "various symptoms by which a man could tell when his liver was out of order. I had them all. It is "
    "a most extraordinary thing, but I never read a patent medicine advertisement without being "
    "impelled to the conclusion that I am suffering from the particular disease therein dealt with in "
    "its most virulent form."
)
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "Name three primary colours.",
             "How many legs does a spider have?", "Explain what a CPU does in one sentence.",
             "Give me a synonym for happy.", "What is 12 plus 7?", "Say hello in Spanish.",
             "Why is the sky blue?", "List two uses of copper."]


@on_model_thread
def probe_buffer() -> torch.Tensor:
    """The 0.5 GiB buffer read_rate reads, made (and first touched) on the model thread.

    Rule: not on the main thread. Filling it there gave that thread an OpenMP team of its own, and
    from then on every 1-stream step ran at ~105 tok/s instead of ~290 (llmasos/engine/worker.py):
    the "1 stream" figures of the peer script's first runs were that, not the engine."""
    return native.huge_empty(2**27).fill_(1.0)


@on_model_thread
def read_rate(buf: torch.Tensor) -> float:
    """GiB/s of one parallel streaming read of buf (the fastest of 3)."""
    lib, threads, best = native.library(), torch.get_num_threads(), math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        lib.stream_read(buf.data_ptr(), buf.numel(), threads, 4)
        best = min(best, time.perf_counter() - t0)
    return buf.numel() * 4 / best / 2**30


@on_model_thread
@torch.inference_mode()
def perplexity(engine) -> float:
    ids = torch.tensor([engine.tokenizer.encode(TEXT, add_special_tokens=False)])
    logits = engine.model(input_ids=ids).logits[0, :-1].float()
    return math.exp(torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item())


@on_model_thread
@torch.inference_mode()
def decode_perplexity(engine) -> float:
    """The text's perplexity through the native decode step: one row, token i at column i, the next
    token's log-probability read from the step's logits."""
    ids = engine.tokenizer.encode(TEXT, add_special_tokens=False)
    cfg = engine.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    shape = (1, cfg.num_key_value_heads, len(ids), head_dim)
    dtype = KV_DTYPES[engine.kv_dtype]
    keys = LayerBuffers(torch.zeros(shape, dtype=dtype) for _ in range(cfg.num_hidden_layers))
    values = LayerBuffers(torch.zeros(shape, dtype=dtype) for _ in range(cfg.num_hidden_layers))
    nll = 0.0
    for i, (token, target) in enumerate(zip(ids[:-1], ids[1:], strict=True)):
        engine.native.decode([token], [i], [0], keys, values, i)
        nll -= torch.log_softmax(engine.native.last_logits()[0].double(), -1)[target].item()
    return math.exp(nll / (len(ids) - 1))


@on_model_thread
def greedy(engine, max_tokens: int = 32) -> list[list[int]]:
    out = []
    for q in QUESTIONS:
        s = Sequence(pid=0, params=SamplingParams(max_tokens=max_tokens), messages=[{"role": "user", "content": q}])
        engine.prepare(s)
        while not s.finish_reason:
            engine.step([s])
        engine.abort(s)
        out.append(s.output_ids)
    return out


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48, help="decode steps per measurement")
    ap.add_argument("--formats", default=",".join(WEIGHT_FORMATS))
    add_threads_flag(ap)
    args = ap.parse_args()
    formats = args.formats.split(",")
    engines = {f: load_engine(args.threads, weights=f, ignore_eos=True) for f in formats}
    for f, e in engines.items():
        assert e.native is not None and e.native.format == f, e.native_reason
    isa = next(iter(engines.values())).native.isa
    buf = probe_buffer()
    one: dict[str, list[float]] = {f: [] for f in formats}
    many: dict[str, list[float]] = {f: [] for f in formats}
    reads: dict[str, list[float]] = {f: [] for f in formats}
    for f in formats:
        decode_rate(engines[f], 2, 4)  # warm up
    for r in range(args.rounds):
        for f in formats:
            one[f].append(decode_rate(engines[f], 1, args.tokens))
            reads[f].append(read_rate(buf))
        for f in formats:
            many[f].append(decode_rate(engines[f], 32, args.tokens // 2))
        print(f"# round {r + 1}: " + ", ".join(f"{f} {one[f][-1]:.0f}/{many[f][-1]:.0f}" for f in formats),
              flush=True)
    base = "fp32" if "fp32" in formats else formats[0]
    texts = {f: greedy(e) for f, e in engines.items()}
    rows = []
    for f, e in engines.items():
        nbytes = sum(t.numel() * t.element_size() for t in e.native._keep)
        match = sum(a == b for a, b in zip(texts[f], texts[base], strict=True))
        rows.append([f, nbytes / 2**20, spread(one[f]), statistics.median(one[f]) / statistics.median(one[base]),
                     spread(many[f]), statistics.median(many[f]) / statistics.median(many[base]),
                     spread(reads[f]), perplexity(e), decode_perplexity(e), f"{match}/{len(QUESTIONS)}"])
    print(f"\nweights: {torch.get_num_threads()} threads, {args.rounds} interleaved rounds, {args.tokens} steps "
          f"(1 stream) / {args.tokens // 2} (32 streams); quantized products on {isa}; "
          f"KV cache {next(iter(engines.values())).kv_dtype}")
    print(table(["format", "step MiB", "1-stream tok/s", f"x {base}", "32-stream tok/s", f"x {base}",
                 "read GiB/s", "perplexity (prefill)", "perplexity (decode step)", f"greedy = {base}"], rows))


if __name__ == "__main__":
    main()
