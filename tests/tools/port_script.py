"""A kernel whose one app calls a built-in memory tool, then waits for a message (for test_port.py).

Usage: ``python port_script.py HOME``. First start: spawn the app. Any later start (after a SIGKILL):
send the app the message it waits for, wait for it, and print its exit value and the syscalls it made
after the restart (its trace) as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from llmasos import App, Kernel, KernelConfig  # noqa: E402
from llmasos.engine.fake import FakeEngine  # noqa: E402

app = App("noter", tools=["remember", "memory_get", "memory_set"])


@app.main
async def main(sys) -> list:
    note = await sys.call_tool("remember", text="the launch code is 42")
    await sys.call_tool("memory_set", key="k", value="v1")
    go = await sys.recv()
    got = await sys.call_tool("memory_get", key="k")
    return [note, got, go.body]


async def run(home: Path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=home)) as k:
        if not k.recovery.restored:
            await k.spawn(f"{Path(__file__).resolve()}:app")
            print("started", flush=True)
            await anyio.sleep_forever()
        (pid,) = k.recovery.restored
        proc = k.get(pid)
        k.send(pid, "go")
        status = await k.wait(pid, timeout=10)
        print(json.dumps({"state": status.state, "value": status.value, "error": status.error,
                          "trace": [e.call.name for e in proc.trace or ()]}), flush=True)


if __name__ == "__main__":
    anyio.run(run, Path(sys.argv[1]))
