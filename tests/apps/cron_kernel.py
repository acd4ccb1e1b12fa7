"""A kernel running one cron, for test_cron: safe to SIGKILL at any moment and run again.

Usage: ``python cron_kernel.py HOME WORKDIR``. The first boot spawns ``cron echo tick --every=0.05
--ticks=8``; a restarted one restores it from HOME's database. Each boot prints ``echoes N`` whenever
the number of echo processes ever spawned changes; once cron has ended it writes WORKDIR/results.json
(cron's row and every echo row) and exits 0. ``flaky`` is an app that always fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine
from llmasos.memory import codec

TICKS, EVERY = 8, 0.05

flaky = App("flaky", "fails every time (test_cron spawns it by path)")


@flaky.main
async def _flaky(sys, n: str) -> str:
    raise RuntimeError(f"tick failed {n}")


async def main(home: Path, workdir: Path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home)) as k:
        store = k.memory.store
        print("boot restored", len(k.recovery.restored), flush=True)
        if not await store.processes():
            await k.spawn("cron", "echo", "tick", every=EVERY, ticks=TICKS)
            await k.memory.flush()
        seen = -1
        while True:
            rows = await store.processes()
            echoes = [r for r in rows if r.app == "echo"]
            if len(echoes) != seen:
                seen = len(echoes)
                print("echoes", seen, flush=True)
            cron = next(r for r in rows if r.app == "cron")
            if cron.state not in ("ready", "running", "waiting"):
                break
            await anyio.sleep(0.005)
        out = {"cron": {"state": cron.state, "value": codec.loads(cron.exit_value), "error": cron.error},
               "echoes": [{"pid": r.pid, "parent": r.parent, "state": r.state} for r in echoes]}
    (workdir / "results.json").write_text(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
