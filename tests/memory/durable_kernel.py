"""A kernel daemon for the durability test: boot, start the apps once, wait, write the results.

Usage: ``python durable_kernel.py HOME WORKDIR honour|ignore``. Safe to SIGKILL at any moment and
run again: a restarted kernel restores the processes from HOME's database and goes on. When every
root process has ended it writes WORKDIR/results.json (atomically) and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from llmasos import Kernel, KernelConfig  # noqa: E402
from llmasos.engine.fake import FakeEngine  # noqa: E402
from llmasos.memory import codec  # noqa: E402

APPS = HERE / "durable_apps.py"


def plan(workdir: Path, honour: bool) -> list[tuple[str, tuple]]:
    counter = str(workdir / "counter.txt")
    pause = 0.06  # the window a kill aims at (a call in flight): wide enough on a loaded machine
    return [
        ("worker", ("alpha", 14, counter, honour, pause)),
        ("worker", ("beta", 10, counter, honour, pause)),
        ("chatter", ("gamma", 8)),
        ("parent", (2, 6)),
        ("streamer", (6,)),
    ]


async def main(home: Path, workdir: Path, honour: bool) -> None:
    engine = FakeEngine(step_delay=0.002)
    # This test kills the kernel 10-80 ms after each boot, on purpose: a crash loop that a process in a
    # longer call (a chat) cannot tell from one its call causes, so recovery must not give up on it.
    async with Kernel(KernelConfig(engine=engine, home=home, max_recoveries=1000)) as k:
        with open(workdir / "boots.log", "a") as f:
            f.write(f"{os.getpid()} restored={len(k.recovery.restored)}\n")
        store = k.memory.store
        # Spawns are sequential, so the roots a killed boot managed to start are a prefix of the plan.
        started = len(await store.processes(parents=[0]))
        for attr, args in plan(workdir, honour)[started:]:
            await k.spawn(f"{APPS}:{attr}", *args)
        await k.memory.flush()
        while True:
            roots = await store.processes(parents=[0])
            if all(r.state not in ("ready", "running", "waiting") for r in roots):
                break
            await anyio.sleep(0.02)
        results = {f"{i}:{r.app}": {"state": r.state, "value": codec.loads(r.exit_value),
                                    "error": r.error} for i, r in enumerate(roots)}
        kv = {key: await _get(k, key) for key in await _keys(k)}
        out = {"results": results, "kv": kv}
    tmp = workdir / "results.tmp"
    tmp.write_text(json.dumps(out, sort_keys=True, default=repr))
    tmp.replace(workdir / "results.json")


async def _keys(k: Kernel) -> list[str]:
    return await k.memory.store.kv_keys("shared")


async def _get(k: Kernel, key: str):
    return (await k.memory.store.kv_get("shared", key))[1]


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "honour")
