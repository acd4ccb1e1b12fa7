"""A user's script as a newcomer writes it: a tool, an app, and a kernel under ``__main__``.

Usage: ``python script.py HOME WORKDIR object|spec`` (test_main_script.py copies this file to a
temporary directory, starts it there and SIGKILLs it). The first start spawns the app, as the App
object or by the path spec ``script.py:app`` that ``llmasos run`` takes; a start after a kill finds
the process restored from HOME's database and waits for it. Each start appends a line to
WORKDIR/boots.log once the kernel is up; the tool appends to WORKDIR/counter.txt; the last start
prints the exit status as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio

from llmasos import App, Kernel, KernelConfig
from llmasos.engine.fake import FakeEngine
from llmasos.memory import codec
from llmasos.syscalls import Sys
from llmasos.syscalls.errors import NoSuchProcess
from llmasos.tools import ToolContext, tool

STEPS = 10


@tool
def effect(ctx: ToolContext, path: str, label: str) -> int:
    """Append label to the file at path once per idempotency key; return its line number."""
    p = Path(path)
    lines = p.read_text().splitlines() if p.exists() else []
    for n, line in enumerate(lines, 1):
        if line.split(" ")[0] == ctx.idempotency_key:
            return n  # a call that was in flight when the kernel died, run again
    with open(p, "a") as f:
        f.write(f"{ctx.idempotency_key} {label}\n")
    time.sleep(0.05)  # the window in which a kill leaves the call in flight
    return len(lines) + 1


app = App("effects", "call the effect tool between other syscalls", tools=["effect"])


@app.main
async def main(sys: Sys, path: str, steps: int = STEPS) -> dict:
    lines = []
    for i in range(steps):
        lines.append(await sys.call_tool("effect", path=path, label=f"step-{i}"))
        reply = await sys.generate(f"step {i}", max_tokens=8)
        await sys.memory.set(f"step-{i}", reply.text)
        await sys.sleep(0.05)
    return {"lines": lines, "last": await sys.memory.get(f"step-{steps - 1}")}


async def run(home: Path, work: Path, mode: str) -> dict:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home)) as k:
        recovery = k.recovery
        with open(work / "boots.log", "a") as f:
            f.write(f"{os.getpid()} restored={recovery.restored} lost={recovery.lost}\n")
        rows = await k.memory.store.processes()
        if not rows:  # the first start
            pid = await k.spawn(app if mode == "object" else f"{sys.argv[0]}:app", str(work / "counter.txt"))
        else:
            pid = rows[0].pid
        try:
            status = await k.wait(pid)
        except NoSuchProcess:  # it ended before the last kill
            return {"state": rows[0].state, "value": codec.loads(rows[0].exit_value), "error": rows[0].error}
        return {"state": status.state, "value": status.value, "error": status.error}


if __name__ == "__main__":
    print(json.dumps(anyio.run(run, Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
