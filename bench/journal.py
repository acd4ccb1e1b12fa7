"""Benchmark the syscall journal: syscalls/s with the journal off, per-call commit, group commit;
and the time to restore 1,000 processes after a crash.

Run: ``python bench/journal.py [--n 3000] [--procs 1,16] [--restore 1000]``. Every ratio is against
the journal-off run of the same process count, measured in the same run. The syscall is
``sys.sleep(0)``: journaled like any other, with no work of its own, so the table shows the journal's
cost. SQLite in WAL mode, synchronous=NORMAL (a commit survives a killed kernel), in a temp dir.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmasos import App, Kernel, KernelConfig  # noqa: E402
from llmasos.engine.fake import FakeEngine  # noqa: E402

looper = App("looper", "make n cheap syscalls")


@looper.main
async def looper_main(sys, n: int) -> int:
    for _ in range(n):
        await sys.sleep(0)
    return n


idler = App("idler", "make a few syscalls, then wait for a message")


@idler.main
async def idler_main(sys) -> None:
    await sys.memory.set("k", 1)
    await sys.sleep(0)
    await sys.getpid()
    await sys.recv()


SPEC = f"{Path(__file__).resolve()}"


def _config(home: Path, mode: str) -> KernelConfig:
    durable = mode != "off"
    return KernelConfig(engine=FakeEngine(), home=home, durable=durable,
                        journal_commit="group" if mode == "group" else "call", max_procs=8192)


async def throughput(mode: str, procs: int, n: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as home:
        async with Kernel(_config(Path(home), mode)) as k:
            start_commits = k.memory.writer.commits
            t0 = time.perf_counter()
            pids = [await k.spawn(f"{SPEC}:looper", n) for _ in range(procs)]
            for pid in pids:
                await k.wait(pid)
            await k.memory.flush()
            elapsed = time.perf_counter() - t0
            commits = k.memory.writer.commits - start_commits
    return procs * n / elapsed, commits


async def restore(count: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as home:
        async with Kernel(_config(Path(home), "call")) as k:
            pids = [await k.spawn(f"{SPEC}:idler") for _ in range(count)]
            while not all(k.get(p).waiting_on == "recv" for p in pids):
                await anyio.sleep(0.05)
        # the shutdown above left every process alive in the database, as a crash does
        t0 = time.perf_counter()
        k = Kernel(_config(Path(home), "call"))
        await k.boot()
        booted = time.perf_counter() - t0
        while not all(k.get(p).waiting_on == "recv" for p in pids):
            await anyio.sleep(0.005)
        replayed = time.perf_counter() - t0
        restored = len(k.recovery.restored)
        await k.shutdown()
    return booted, replayed, restored


async def main(args: argparse.Namespace) -> None:
    print(f"journaled syscalls per second (sys.sleep(0)), SQLite WAL, n={args.n} per process")
    print(f"{'procs':>5} {'mode':<16} {'syscalls/s':>11} {'vs off':>7} {'commits':>8}")
    for procs in [int(p) for p in args.procs.split(",")]:
        n = max(args.n // procs, 100) if procs > 1 else args.n
        base = None
        for mode, label in (("off", "journal off"), ("call", "per-call commit"),
                            ("group", "group commit")):
            rate, commits = await throughput(mode, procs, n)
            base = base or rate
            print(f"{procs:>5} {label:<16} {rate:>11,.0f} {rate / base:>7.2f} {commits:>8}")
    if args.restore:
        booted, replayed, restored = await restore(args.restore)
        print(f"\nrestore after a crash: {restored} processes")
        print(f"  boot (open db, recover, restart all): {booted:.2f} s")
        print(f"  until every process replayed to its live point: {replayed:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--procs", default="1,16")
    parser.add_argument("--restore", type=int, default=1000)
    anyio.run(main, parser.parse_args())
