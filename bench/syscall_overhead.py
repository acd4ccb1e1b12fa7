"""Syscall overhead: null-syscall round trips through the kernel's chokepoint.

Prints, from one run: getpid round trips per second through ``Kernel.syscall`` beside a bare anyio
memory-object-stream round trip (a request sent to a server task and its reply received); spawn+exit
rate; a sandboxed app's getpid and generate (FakeEngine) beside the same calls from an app in the
kernel's process, and its spawn+exit rate (a child OS process each); and resident memory per idle
process with 10,000 processes blocked in recv. A ratio is time per call over the baseline's.

    python bench/syscall_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import tempfile
import time

import anyio
import psutil

from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine

null = App("null")


@null.main
async def _null(sys, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await sys.getpid()
    return time.perf_counter() - t0


snull = App("snull", sandbox=True)  # the same code, in a child OS process (found there by this file's path)
snull.main(_null)

gen = App("gen")


@gen.main
async def _gen(sys, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await sys.generate("hi", max_tokens=4)
    return time.perf_counter() - t0


sgen = App("sgen", sandbox=True)
sgen.main(_gen)

noop = App("noop")


@noop.main
async def _noop(sys) -> None:
    return None


snoop = App("snoop", sandbox=True)
snoop.main(_noop)


idle = App("idle")


@idle.main
async def _idle(sys) -> None:
    await sys.recv()


async def bare_round_trip(n: int) -> float:
    """The baseline: a request and its reply through two anyio memory object streams."""
    req_send, req_recv = anyio.create_memory_object_stream[int](math.inf)
    rep_send, rep_recv = anyio.create_memory_object_stream[int](math.inf)

    async def server() -> None:
        async for item in req_recv:
            rep_send.send_nowait(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        t0 = time.perf_counter()
        for i in range(n):
            req_send.send_nowait(i)
            await rep_recv.receive()
        elapsed = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    return elapsed


def _kernel(home: str, **kw) -> Kernel:
    return Kernel(KernelConfig(engine=FakeEngine(), home=home, memory=False, **kw))


async def main(quick: bool) -> None:
    n = 20_000 if quick else 200_000
    n_spawn = 2_000 if quick else 20_000
    n_idle = 2_000 if quick else 10_000
    rows = []
    with tempfile.TemporaryDirectory() as home:
        bare = min([await bare_round_trip(n) for _ in range(3)])
        async with _kernel(home) as k:
            sys_t = min([(await k.run(null, n)).value for _ in range(3)])
        rows.append(("null syscall (getpid) round trip", n / sys_t, "bare anyio stream round trip", n / bare,
                     sys_t / bare))

        async with _kernel(home, max_zombies=0) as k:
            t0 = time.perf_counter()
            for _ in range(n_spawn):
                await k.wait(await k.spawn(noop))
            spawn_t = time.perf_counter() - t0
        rows.append(("spawn + exit + wait", n_spawn / spawn_t, "", None, None))

        n_sb, n_gen = n // 10, n // 100
        async with _kernel(home) as k:
            sb_t = min([(await k.run(snull, n_sb)).value for _ in range(3)])
            gen_t = min([(await k.run(gen, n_gen)).value for _ in range(3)])
            sgen_t = min([(await k.run(sgen, n_gen)).value for _ in range(3)])
            t0 = time.perf_counter()
            for _ in range(20):
                pid = await k.spawn(snoop)
                await k.get(pid).done.wait()
                confinement = k.info(pid).sandbox
                await k.wait(pid)
            sspawn_t = time.perf_counter() - t0
        rows.append(("null syscall, sandboxed app", n_sb / sb_t, "null syscall, in-process app", n / sys_t,
                     (sb_t / n_sb) / (sys_t / n)))
        rows.append(("generate (fake, 4 tokens), sandboxed", n_gen / sgen_t, "generate, in-process app",
                     n_gen / gen_t, sgen_t / gen_t))
        rows.append(("sandboxed spawn + exit + wait", 20 / sspawn_t, "spawn + exit + wait, in-process",
                     n_spawn / spawn_t, (sspawn_t / 20) / (spawn_t / n_spawn)))

        gc.collect()
        rss0 = psutil.Process(os.getpid()).memory_info().rss
        async with _kernel(home, max_procs=n_idle + 10) as k:
            pids = [await k.spawn(idle) for _ in range(n_idle)]
            await anyio.sleep(0.2)
            gc.collect()
            rss1 = psutil.Process(os.getpid()).memory_info().rss
            assert all(k.get(p).waiting_on == "recv" for p in pids)
            per_proc = (rss1 - rss0) / n_idle
    print(f"\nllmasos syscall overhead ({'quick' if quick else 'full'} run, {n:,} calls, 1 process)\n")
    print(f"| {'what':36} | {'per second':>12} | {'baseline':31} | {'baseline /s':>12} | {'ratio':>8} |")
    print(f"|{'-'*38}|{'-'*14}|{'-'*33}|{'-'*14}|{'-'*10}|")
    for what, rate, base, base_rate, ratio in rows:
        b = f"{base_rate:12,.0f}" if base_rate else f"{'':12}"
        r = f"{ratio:7.2f}x" if ratio else f"{'':8}"
        print(f"| {what:36} | {rate:12,.0f} | {base:31} | {b} | {r} |")
    print(f"\nsandboxed apps ran confined by: {confinement}")
    print(f"RSS per idle process (blocked in recv) at {n_idle:,} processes: {per_proc / 1024:.1f} KiB")
    print("targets: null syscall <= 3x the bare round trip and >= 50,000/s; <= 20 KB per idle process")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a few seconds)")
    anyio.run(main, parser.parse_args().quick)
