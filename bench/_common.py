"""Shared pieces of the benchmarks: the engine, prompts, drivers (kernel or bare loop) and tables.

Rule: every number a benchmark prints is measured in the same process as its baseline; nothing is
copied from elsewhere. The model is the embedded default (converted once into $LLMASOS_HOME).
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from llmasos.engine import worker  # noqa: E402
from llmasos.engine.base import SamplingParams, Sequence  # noqa: E402
from llmasos.engine.hf import HFEngine  # noqa: E402
from llmasos.kernel.sched import SchedLimits, make_scheduler  # noqa: E402

ANIMALS = ["fox", "owl", "cat", "whale", "crow", "bear", "frog", "wolf", "moth", "hare", "seal", "lynx"]
PLACES = ["forest", "harbour", "library", "desert", "mountain", "city", "garden", "river", "island"]


def prompt(i: int) -> str:
    """A ~30-token story opening, different for each i."""
    a, p, b = ANIMALS[i % len(ANIMALS)], PLACES[i % len(PLACES)], ANIMALS[(i * 7 + 3) % len(ANIMALS)]
    return (f"Story {i}. Once upon a time a clever {a} lived near the {p}. Every morning the {a} "
            f"met an old {b}, and one day they decided to")


def on_model_thread(fn):
    """Run a benchmark function on llmasos's model thread, as the kernel runs every step.

    Baselines and bare-loop drivers must run there too: a second thread touching the model gives
    the process a second OpenMP team, which slows every later step (llmasos/engine/worker.py)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return worker.call(fn, *args, **kwargs)

    return wrapper


def add_threads_flag(ap: object) -> None:
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice; 1 is steadier on a busy machine)")


def load_engine(threads: int | None = None, **kw: object) -> HFEngine:
    if threads:
        worker.call(torch.set_num_threads, threads)
    t0 = time.perf_counter()
    engine = HFEngine.from_pretrained("smollm2-135m", **kw)
    print(f"# model loaded in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}",
          file=sys.stderr)
    return engine


class Plain:
    """The same model as plain transformers (no packed layers): what the baselines run on."""

    def __init__(self, dtype: str = "float32") -> None:
        from llmasos.engine import models

        self.model, self.tokenizer = worker.call(models.load, "smollm2-135m", dtype=dtype)
        self.model.eval()

    def weight_bytes(self) -> int:
        """Bytes of weights one decode step reads (tied embeddings counted once, as lm_head)."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())


def kernel_available() -> bool:
    try:
        from llmasos.kernel import Kernel, KernelConfig  # noqa: F401
        from llmasos.apps.app import App  # noqa: F401
    except ImportError:
        return False
    return True


@on_model_thread
def drive_loop(engine: HFEngine, seqs: list[Sequence], policy: str = "fifo",
               limits: SchedLimits | None = None, arrivals: list[tuple[float, Sequence]] | None = None,
               ) -> dict[int, float]:
    """The kernel's LLM loop without the kernel: schedule, step, deliver. Returns sid -> TTFT seconds."""
    sched = make_scheduler(policy, limits or SchedLimits(max_batch=engine.max_batch))
    start = time.perf_counter()
    submitted: dict[int, float] = {}
    ttft: dict[int, float] = {}
    for s in seqs:
        engine.prepare(s)
        sched.add(s)
        submitted[s.sid] = start
    pending = sorted(arrivals or [], key=lambda a: a[0])
    while len(sched) or pending:
        now = time.perf_counter() - start
        while pending and pending[0][0] <= now:
            _, s = pending.pop(0)
            engine.prepare(s)
            sched.add(s)
            submitted[s.sid] = time.perf_counter()
        batch = sched.schedule(engine.capacity(), engine.cached_tokens)
        if not batch:
            time.sleep(min(0.01, max(0.0, pending[0][0] - now)) if pending else 0)
            continue
        for e in engine.step(batch):
            if e.seq.sid not in ttft:
                ttft[e.seq.sid] = time.perf_counter() - submitted[e.seq.sid]
            if e.finish_reason:
                sched.remove(e.seq)
                engine.abort(e.seq)
        sched.on_step(batch)
    return ttft


def new_kernel(engine: HFEngine, policy: str = "fifo", **cfg: object):
    from llmasos.kernel import Kernel, KernelConfig

    home = Path(tempfile.mkdtemp(prefix="llmasos-bench-"))
    return Kernel(KernelConfig(engine=engine, policy=policy, memory=False, home=home, **cfg))


def seq(i: int, max_tokens: int, **kw: object) -> Sequence:
    return Sequence(pid=i + 1, params=SamplingParams(max_tokens=max_tokens), prompt=prompt(i), **kw)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


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
