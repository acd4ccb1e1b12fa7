"""Time to first token of short requests arriving while long generations hold the batch, per policy.

Workload: LONG long generations (256 tokens each, priority 0) start together; after a short warm-up a
short request (16 tokens, nice -5 so the priority policy may favour it) arrives every second. The batch
holds --max-batch sequences (default 16 = the long ones), so a short request finds the batch full and
the policy decides whether it waits for a long one to finish (fifo), for a quantum (rr, fair) or
preempts at once (priority). Baseline: the same short requests on an idle engine, measured right
before each policy. Columns: p50 / p95 TTFT of the short requests idle and under load (seconds), and
the ratios.

Usage: python bench/latency.py [--quick] [--driver kernel|loop] [--policies fifo,rr,priority,fair]
"""

from __future__ import annotations

import argparse
import sys
import time

import anyio
from _common import (
    add_threads_flag, drive_loop, kernel_available, load_engine, new_kernel, pct, prompt, seq, table,
)

from llmasos.kernel.sched import SchedLimits


def run_loop(engine, policy: str, n_long: int, long_tokens: int, shorts: int, warmup: float,
             max_batch: int, quantum: int) -> list[float]:
    longs = [seq(i, long_tokens) for i in range(n_long)]
    arrivals = [(warmup + k, seq(100 + k, 16, priority=-5)) for k in range(shorts)]
    ttft = drive_loop(engine, longs, policy, SchedLimits(max_batch=max_batch, quantum=quantum), arrivals)
    return [ttft[s.sid] for _, s in arrivals]


def run_kernel(engine, policy: str, n_long: int, long_tokens: int, shorts: int, warmup: float,
               max_batch: int, quantum: int) -> list[float]:
    from llmasos.apps.app import App

    long_app = App("bench-long", "a long generation")
    short_app = App("bench-short", "a short request that measures its time to first token", priority=-5)

    @long_app.main
    async def long_main(sys, i: int) -> int:
        return (await sys.generate(prompt(i), max_tokens=long_tokens)).completion_tokens

    @short_app.main
    async def short_main(sys, i: int) -> float:
        t0 = time.perf_counter()
        first = None
        async for _ in sys.generate(prompt(i), max_tokens=16, stream=True):
            if first is None:
                first = time.perf_counter() - t0
        return first

    async def go() -> list[float]:
        async with new_kernel(engine, policy, max_batch=max_batch, quantum=quantum) as kernel:
            longs = [await kernel.spawn(long_app, i) for i in range(n_long)]
            await anyio.sleep(warmup)
            pids = []
            for k in range(shorts):
                pids.append(await kernel.spawn(short_app, 100 + k))
                await anyio.sleep(1.0)
            values = [(await kernel.wait(pid)).value for pid in pids]
            for pid in longs:
                kernel.kill(pid)
            return values

    return anyio.run(go)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 long x 128 tokens, 5 short requests")
    ap.add_argument("--driver", choices=["kernel", "loop"], default=None)
    ap.add_argument("--policies", default="fifo,rr,priority,fair")
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument("--quantum", type=int, default=16)
    add_threads_flag(ap)
    args = ap.parse_args()
    driver = args.driver or ("kernel" if kernel_available() else "loop")
    n_long, long_tokens, shorts = (8, 128, 5) if args.quick else (16, 256, 12)
    max_batch = args.max_batch or n_long
    warmup = 3.0
    engine = load_engine(args.threads, max_batch=64, ignore_eos=True)
    run = run_kernel if driver == "kernel" else run_loop
    rows = []
    for policy in args.policies.split(","):
        # The idle baseline is measured right before each policy: this machine's speed drifts by
        # 10-30 % over minutes, and a ratio should compare runs made under the same conditions.
        idle = run(engine, "fifo", 0, 1, shorts, 0.0, max_batch, args.quantum)
        base50, base95 = pct(idle, 50), pct(idle, 95)
        t0 = time.perf_counter()
        values = run(engine, policy, n_long, long_tokens, shorts, warmup, max_batch, args.quantum)
        p50, p95 = pct(values, 50), pct(values, 95)
        rows.append([policy, base50, base95, p50, p95, p50 / base50, p95 / base95])
        print(f"# {policy}: {time.perf_counter() - t0:.0f} s; ttft {[round(v, 2) for v in values]}; "
              f"idle {[round(v, 2) for v in idle]}", file=sys.stderr)
    print(f"\nlatency ({driver}): {n_long} long x {long_tokens} tokens running, batch of {max_batch}, "
          f"a 16-token request every 1 s (x{shorts}); rr/fair quantum {args.quantum}")
    print(table(["policy", "idle p50 s", "idle p95 s", "p50 TTFT s", "p95 TTFT s", "p50 vs idle",
                 "p95 vs idle"], rows))


if __name__ == "__main__":
    main()
