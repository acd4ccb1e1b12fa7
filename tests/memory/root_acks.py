"""A kernel whose root acknowledges spawns, messages and stdin writes, then freezes: for test_durable_edges.

Usage: ``python root_acks.py HOME``. It spawns a sleeper, then in each of 5 rounds makes, as the root
process (the faces' way) and through the Python API, a spawn, a send and a stdin write to it, and prints
``acked N`` once the round's calls have returned. After the 5th it blocks its event loop (nothing more
can be committed) until it is killed: every acknowledged row must already be in the database.
"""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from llmasos import App, Kernel, KernelConfig  # noqa: E402
from llmasos.engine.fake import FakeEngine  # noqa: E402
from llmasos.syscalls.calls import Spawn, Stdin  # noqa: E402

ROUNDS = 5
SPEC = f"{Path(__file__).resolve()}:sleeper"

sleeper = App("sleeper", "sleep until killed")


@sleeper.main
async def sleeper_main(sys) -> None:
    await sys.sleep(3600)


async def _acked(receipt: object) -> None:
    if inspect.isawaitable(receipt):  # (a kernel whose send returns nothing: the test shows what it lost)
        await receipt


async def main(home: Path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home)) as k:
        target = await k.spawn(SPEC)
        await k.memory.flush()
        print("target", target, flush=True)
        root = k.root
        for i in range(1, ROUNDS + 1):
            await root.syscall(Spawn(SPEC))
            await root.send(target, f"root {i}")
            await root.syscall(Stdin(target, f"root {i}\n"))
            await k.spawn(SPEC)
            await _acked(k.send(target, f"api {i}"))
            await _acked(k.write_stdin(target, f"api {i}\n"))
            print("acked", i, flush=True)
        time.sleep(600)  # the loop is frozen: what was not committed yet never will be


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
