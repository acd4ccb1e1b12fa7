"""Benchmark a cluster of kernels on one PostgreSQL: the fence's cost per syscall, spawn and syscall
throughput for 1, 2 and 3 nodes, and failover time from SIGKILL to the first syscall of an adopted process.

Run: ``python bench/cluster.py [--n 400] [--procs 8] [--spawns 60] [--rounds 3] [--kills 20] [--lease 1]``.
PostgreSQL: $LLMASOS_TEST_PG_URL, or a throwaway server (tests/memory/pg.py). Throughput runs the nodes
as kernels in this process (one event loop, each with its own connections), interleaved and repeated
``--rounds`` times; the baseline is a lone kernel (no cluster, no fence) on the same database, measured
in the same round. Failover runs real ``llmasos serve`` nodes (OS processes) and SIGKILLs the one that
runs a ticking process ``--kills`` times; the time is from the kill to the adopted process's first new
journal row, so it is about the lease plus up to one heartbeat plus the restore.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmasos import App, Kernel, KernelConfig  # noqa: E402
from llmasos.engine.fake import FakeEngine  # noqa: E402

SPEC = str(Path(__file__).resolve())

looper = App("looper", "make n cheap journaled syscalls")


@looper.main
async def looper_main(sys, n: int) -> int:
    for _ in range(n):
        await sys.sleep(0)
    return n


ticker = App("ticker", "a journaled syscall every 20 ms, for ever")


@ticker.main
async def ticker_main(sys) -> None:
    while True:
        await sys.sleep(0.02)


def _config(url: str, home: Path, node: str | None) -> KernelConfig:
    return KernelConfig(engine=FakeEngine(), home=home, database=url, node=node, lease=5.0, heartbeat=1.0,
                        max_procs=8192, retention=None)


async def throughput(url: str, nodes: int, procs: int, n: int, spawns: int) -> tuple[float, float]:
    """(spawns/s, syscalls/s) over every node: nodes=0 is the lone kernel (no cluster)."""
    with tempfile.TemporaryDirectory() as home:
        async with AsyncExitStack() as stack:
            names = [None] if nodes == 0 else [f"bench-{os.getpid()}-{i}-{time.monotonic_ns()}" for i in range(nodes)]
            kernels = [await stack.enter_async_context(Kernel(_config(url, Path(home) / str(i), name)))
                       for i, name in enumerate(names)]
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for k in kernels:
                    async def spawn_many(k: Kernel = k) -> None:
                        for _ in range(spawns // len(kernels)):
                            await k.spawn("echo", "x")
                    tg.start_soon(spawn_many)
            spawn_rate = (spawns // len(kernels)) * len(kernels) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            pids = [(k, await k.spawn(f"{SPEC}:looper", n)) for k in kernels for _ in range(procs // len(kernels))]
            for k, pid in pids:
                await k.wait(pid)
            call_rate = len(pids) * n / (time.perf_counter() - t0)
    return spawn_rate, call_rate


def failover(url: str, kills: int, lease: float) -> list[float]:
    """Seconds from each SIGKILL of the node running the ticker to its first new journal row elsewhere."""
    from tests.cluster.nodes import Node, query

    work = Path(tempfile.mkdtemp(prefix="llmasos-failover-"))
    nodes = [Node(url, f"f{i}", work, lease) for i in range(3)]
    nodes = [n.ready() for n in nodes]
    spare = [Node(url, f"g{i}", work, lease) for i in range(2)]
    out: list[float] = []
    try:
        pid = nodes[0].http("POST", "/v1/procs", json={"app": f"{SPEC}:ticker"})["pid"]
        time.sleep(0.5)
        for i in range(kills):
            nodes += [s.ready() for s in spare if s.has_output()]
            spare = [s for s in spare if s not in nodes]
            while len(nodes) < 2:
                nodes.append(spare.pop(0).ready())
            owner = query(url, "SELECT node FROM processes WHERE pid = $1", pid)[0]["node"]
            victim = next(n for n in nodes if n.node == owner)
            top = query(url, "SELECT COALESCE(MAX(n), 0) AS n FROM journal WHERE pid = $1", pid)[0]["n"]
            killed = time.time()
            victim.signal(signal.SIGKILL)
            victim.kill()
            nodes.remove(victim)
            spare.append(Node(url, f"h{i}", work, lease))
            while True:
                row = query(url, "SELECT MIN(at) AS at FROM journal WHERE pid = $1 AND n > $2 AND at > $3",
                            pid, top, killed)[0]
                if row["at"] is not None:
                    out.append(row["at"] - killed)
                    break
                time.sleep(0.01)
            time.sleep(0.2)
    finally:
        for n in nodes + spare:
            n.kill()
    return out


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):>10,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"


async def bench(url: str, args: argparse.Namespace) -> None:
    results: dict[int, list[tuple[float, float]]] = {k: [] for k in (0, 1, 2, 3)}
    for _ in range(args.rounds):  # interleaved: the machine's speed swings
        for nodes in (0, 1, 2, 3):
            results[nodes].append(await throughput(url, nodes, args.procs, args.n, args.spawns))
    base_s = statistics.median(r[0] for r in results[0])
    base_c = statistics.median(r[1] for r in results[0])
    print(f"\nthroughput on one PostgreSQL ({args.rounds} rounds, median (min-max)); per-call commit; "
          f"{args.procs} loopers x {args.n} sys.sleep(0) over the nodes; {args.spawns} spawns of echo")
    print(f"{'nodes':<22} {'spawns/s':>24} {'vs lone':>8} {'syscalls/s':>24} {'vs lone':>8}")
    for nodes, label in ((0, "lone kernel (no fence)"), (1, "1 node"), (2, "2 nodes"), (3, "3 nodes")):
        s = [r[0] for r in results[nodes]]
        c = [r[1] for r in results[nodes]]
        print(f"{label:<22} {_spread(s):>24} {statistics.median(s) / base_s:>8.2f} {_spread(c):>24} "
              f"{statistics.median(c) / base_c:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--procs", type=int, default=6)
    parser.add_argument("--spawns", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    from tests.memory.pg import postgres_url

    with postgres_url() as url:
        anyio.run(bench, url, args)
        if not args.skip_failover:
            times = failover(url, args.kills, args.lease)
            q = statistics.quantiles(times, n=20)
            print(f"\nfailover, SIGKILL -> first syscall of the adopted process ({len(times)} kills, lease "
                  f"{args.lease}s, heartbeat {min(2.0, args.lease / 4)}s): p50 {statistics.median(times):.2f}s  "
                  f"p95 {q[18]:.2f}s  min {min(times):.2f}s  max {max(times):.2f}s")


if __name__ == "__main__":
    main()
