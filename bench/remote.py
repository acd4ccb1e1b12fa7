"""Throughput through OpenAIEngine against the same daemon driven directly by OpenAI clients.

Workload: one local llmasos daemon (`llmasos serve`, the embedded model) in a subprocess. Peer: N
concurrent `openai.AsyncOpenAI` clients, each streaming one chat completion (max_tokens new tokens,
greedy) straight to the daemon. Subject: a kernel in this process whose engine is an OpenAIEngine on
that daemon, running N processes that each make the same request (generate with the same messages);
its scheduler admits them, all N in flight. Both count tokens from the server's usage. The two run
interleaved, --repeats times; the table gives aggregate completion tokens/s of each and the ratio
(engine / direct: 1.0 means the remote engine adds nothing).

The client CPU columns are the seconds of CPU this process (the clients, or the kernel with its
engine) used per 1000 tokens: the remote engine's own cost, which the daemon's speed does not hide.
`--model fake` runs the daemon on the scripted engine (instant replies), so the client side is all
that is measured.

Usage: python bench/remote.py [--n 32] [--max-tokens 64] [--repeats 3] [--quick] [--model fake]
"""

from __future__ import annotations

import argparse
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmasos.engine.openai import OpenAIEngine  # noqa: E402
from llmasos.kernel import Kernel, KernelConfig  # noqa: E402

TOKEN = "bench-remote-token"
ANIMALS = ["fox", "owl", "cat", "whale", "crow", "bear", "frog", "wolf", "moth", "hare", "seal", "lynx"]


def messages(i: int) -> list[dict[str, str]]:
    a, b = ANIMALS[i % len(ANIMALS)], ANIMALS[(i * 7 + 3) % len(ANIMALS)]
    return [{"role": "user", "content": f"Story {i}: tell a short story about a {a} who meets a {b}."}]


def start_daemon(home: Path, model: str | None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "LLMASOS_HOME": str(home), "LLMASOS_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    env.pop("LLMASOS_URL", None)
    extra = ["--model", model] if model else []
    p = subprocess.Popen([sys.executable, "-m", "llmasos.cli", "serve", "--port", "0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    ready, _, _ = select.select([p.stdout], [], [], 600)
    line = p.stdout.readline() if ready else ""
    found = re.search(r"serving (http://\S+)", line)
    if not found:
        p.kill()
        raise SystemExit(f"the daemon did not start: {line!r}")
    return p, found.group(1) + "/v1"


async def direct(url: str, model: str, n: int, max_tokens: int) -> tuple[int, float]:
    """N concurrent OpenAI clients streaming from the daemon: (completion tokens, seconds)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=600)
    tokens = [0] * n

    async def one(i: int) -> None:
        stream = await client.chat.completions.create(
            model=model, messages=messages(i), max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.usage is not None:
                tokens[i] = chunk.usage.completion_tokens

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    elapsed = time.perf_counter() - t0
    await client.close()
    return sum(tokens), elapsed


async def through_engine(kernel: Kernel, n: int, max_tokens: int) -> tuple[int, float]:
    """N kernel processes generating through OpenAIEngine: (completion tokens, seconds)."""
    tokens = [0] * n

    async def one(i: int) -> None:
        async with kernel.session("bench") as sys_:
            stream = sys_.generate(messages=messages(i), max_tokens=max_tokens, stream=True)
            async for _ in stream:
                pass
            tokens[i] = stream.completion.completion_tokens

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return sum(tokens), time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=8, max_tokens=16, one repeat")
    ap.add_argument("--model", default=None, help="the daemon's --model (default: the embedded model)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.max_tokens, args.repeats = 8, 16, 1
    home = Path(os.environ.get("LLMASOS_HOME") or tempfile.mkdtemp())
    daemon, url = start_daemon(home, args.model)
    model = args.model or "smollm2-135m"
    os.environ["LLMASOS_BENCH_KEY"] = TOKEN
    engine = OpenAIEngine(url, model, api_key_env="LLMASOS_BENCH_KEY", max_inflight=args.n,
                          timeout=600)  # as the OpenAI clients: a busy machine may stall the daemon
    rows = []
    try:
        with tempfile.TemporaryDirectory() as khome:
            async with Kernel(KernelConfig(engine=engine, home=Path(khome), memory=False,
                                           max_batch=args.n)) as kernel:
                await direct(url, model, 2, 4)  # warm both paths (first requests pay one-off costs)
                await through_engine(kernel, 2, 4)
                for r in range(args.repeats):
                    # Interleaved, and the order flips each repeat, so a drift of the machine's speed
                    # favours neither.
                    order = ("direct", "engine") if r % 2 == 0 else ("engine", "direct")
                    got = {}
                    for which in order:
                        cpu = time.process_time()
                        if which == "direct":
                            got[which] = await direct(url, model, args.n, args.max_tokens)
                        else:
                            got[which] = await through_engine(kernel, args.n, args.max_tokens)
                        got[which] += (time.process_time() - cpu,)
                    d_tok, d_s, d_cpu = got["direct"]
                    e_tok, e_s, e_cpu = got["engine"]
                    rows.append((r + 1, d_tok / d_s, e_tok / e_s, d_tok, e_tok, 1000 * d_cpu / d_tok,
                                 1000 * e_cpu / e_tok))
                    print(f"# repeat {r + 1}: direct {d_tok / d_s:.1f} tok/s, engine {e_tok / e_s:.1f} tok/s",
                          file=sys.stderr, flush=True)
    finally:
        engine.close()
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    print(f"\n{args.n} concurrent requests, {args.max_tokens} new tokens each, greedy, one local daemon "
          f"({model}); completion tokens/s from the server's usage\n")
    print("| repeat | direct OpenAI clients tok/s | through OpenAIEngine tok/s | engine / direct "
          "| tokens (direct, engine) | client CPU s / 1000 tok (direct, engine) |")
    print("|---|---|---|---|---|---|")
    for r, d, e, dt, et, dc, ec in rows:
        print(f"| {r} | {d:.1f} | {e:.1f} | {e / d:.2f} | {dt}, {et} | {dc:.2f}, {ec:.2f} |")
    ratios = [row[2] / row[1] for row in rows]
    print(f"\nratio median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    anyio.run(main)
