"""The tool port: a tool gets a narrow ToolContext bound to its process, never the kernel.

Its nested syscalls pass the chokepoint as syscalls of the calling process (caps, trace, journal), and a
built-in memory tool's writes are journaled inside its call_tool, so they replay after a SIGKILL.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmasos import App
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import PermissionDenied
from llmasos.tools import REGISTRY, ToolContext, tool

from ..conftest import make_kernel

SCRIPT = Path(__file__).with_name("port_script.py")


@pytest.fixture
def prober():
    """A third-party tool that tries to reach process control through its context."""

    @tool(name="prober_tool", register=False)
    async def prober(what: str, ctx: ToolContext) -> dict:
        """Try something a tool should not be able to do."""
        found = sorted(a for a in ("kernel", "sys", "proc") if hasattr(ctx, a))
        calls = {"kill": c.Kill(1), "spawn": c.Spawn("echo", ("x",)), "send": c.Send(1, "hi"),
                 "call_tool": c.CallTool("clock"), "wait": c.Wait(1)}
        try:
            await ctx.syscall(calls[what])
        except PermissionDenied as exc:
            return {"attributes": found, "refused": str(exc)}
        return {"attributes": found, "refused": None}

    REGISTRY.register(prober)
    yield prober
    REGISTRY.unregister("prober_tool")


@pytest.mark.parametrize("what", ["kill", "spawn", "send", "call_tool", "wait"])
async def test_a_third_party_tool_cannot_reach_process_control(tmp_path, prober, what):
    app = App("host", tools=["prober_tool"], can_spawn=True)

    @app.main
    async def main(sys) -> dict:
        return await sys.call_tool("prober_tool", what=what)

    async with make_kernel(tmp_path) as k:
        victim = await k.spawn("echo", "x")
        status = await k.run(app)
    assert status.state == "exited", status.error
    assert status.value["attributes"] == []  # no kernel, no Sys, no process record in the context
    assert status.value["refused"] and f"may not make the {c.Kill(1).name if what == 'kill' else what}" \
        in status.value["refused"].replace("calltool", "call_tool")
    assert victim  # the echo process was never touched (kill refused before the chokepoint)


async def test_a_memory_tool_writes_through_the_chokepoint_traced_and_checked(tmp_path):
    app = App("mem", tools=["memory_set", "memory_get"])

    @app.main
    async def main(sys) -> object:
        await sys.call_tool("memory_set", key="color", value="blue")
        try:
            await sys.call_tool("memory_set", key="x", value="y", namespace="someone-else")
        except Exception as exc:  # the namespace is checked against this process's caps
            refused = type(exc).__name__, str(exc)
        return await sys.call_tool("memory_get", key="color"), refused

    async with make_kernel(tmp_path, engine=FakeEngine()) as k:
        pid = await k.spawn(app)
        proc = k.get(pid)
        status = await k.wait(pid)
    got, refused = status.value
    assert got == "blue"
    assert refused[0] == "ToolFailed" or "may not use memory namespace" in refused[1]
    assert "may not use memory namespace 'someone-else'" in refused[1]
    names = sorted((e.n, e.call.name) for e in proc.trace)
    # Each tool's memory syscall is a syscall of the process, taking the position after its call_tool
    # (the refused one too: it was checked at the chokepoint, and failed there).
    assert names == [(1, "calltool"), (2, "memset"), (3, "calltool"), (4, "memset"), (5, "calltool"),
                     (6, "memget")]
    refusal = next(e for e in proc.trace if e.n == 4)
    assert isinstance(refusal.error, PermissionDenied)


def test_a_memory_tool_call_is_journaled_and_replays_after_sigkill(tmp_path):
    home = tmp_path / "home"
    first = subprocess.Popen([sys.executable, str(SCRIPT), str(home)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "started", first.stderr.read()
        db = home / "llmasos.db"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until both tool calls are journaled (the app is in recv)
            with sqlite3.connect(db) as conn:
                done = conn.execute("SELECT count(*) FROM journal WHERE pid = 1 AND call = 'CallTool' "
                                    "AND status = 'ok'").fetchone()[0]
            if done == 2:
                break
            time.sleep(0.02)
        assert done == 2
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()  # reaps it and closes its pipes
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT n, call, status, span FROM journal WHERE pid = 1 ORDER BY n").fetchall()
    # call_tool at 1 made remember at 2; call_tool at 3 made memset at 4: both nested calls journaled.
    assert rows == [(1, "CallTool", "ok", 1), (2, "Remember", "ok", 0), (3, "CallTool", "ok", 1),
                    (4, "MemSet", "ok", 0)]
    second = subprocess.run([sys.executable, str(SCRIPT), str(home)], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout.strip().splitlines()[-1])
    assert out["state"] == "exited", out["error"]
    note, got, go = out["value"]
    assert note == {"note": 1} and got == "v1" and go == "go"
    # After the restart the two call_tools were replayed from the journal: the tools did not run again,
    # so their nested memory syscalls were not made again; then recv and the last tool ran live.
    # (A trace lists calls as they end: a nested call before the call_tool that made it.)
    assert out["trace"] == ["calltool", "calltool", "recv", "memget", "calltool"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 1
