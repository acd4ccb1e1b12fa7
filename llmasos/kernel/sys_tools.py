"""Handlers for the tool syscalls.

Rule: handlers are thin. The capability check (may this process use this tool?) already happened at
the chokepoint; here the tool is looked up, given its port (``ToolContext``: never the kernel), and run
by tools/invoke.py, which turns every failure into a ToolError.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmasos.memory.keys import current_idempotency_key  # set by the journal around each call
from llmasos.syscalls import calls as c
from llmasos.syscalls.calls import Syscall
from llmasos.tools.invoke import invoke
from llmasos.tools.registry import REGISTRY, ToolContext

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process


def tool_context(k: Kernel, p: Process) -> ToolContext:
    """The port a tool called by p gets: p's pid, its jail (``jail``), the call's idempotency key, and p's chokepoint
    for the few syscalls a tool may make (never the kernel itself)."""

    async def trap(call: Syscall) -> Any:
        return await k.syscall(p, call)

    return ToolContext(pid=p.pid, home=jail(k, p.pid), idempotency_key=current_idempotency_key(), _trap=trap)


def jail(k: Kernel, pid: int) -> Path:
    """pid's own directory, ``$LLMASOS_HOME/procs/<run>-<pid>``: run is the database's id (a process
    restored after a crash finds its files again; pids are never reused in a database), or, without a
    database, this kernel run's (pids start at 1 again, and a new pid 1 must not see an old one's files)."""
    run = k.memory.db_id if k.memory is not None else k.run_id
    return k.config.home / "procs" / f"{run}-{pid}"


async def sys_call_tool(k: Kernel, p: Process, call: c.CallTool) -> Any:
    return await invoke(REGISTRY.get(call.tool), call.arguments, tool_context(k, p), call.timeout)


async def sys_list_tools(k: Kernel, p: Process, call: c.ListTools) -> list[dict[str, Any]]:
    return [t.schema for t in REGISTRY.all(p.caps.tools)]


HANDLERS = {c.CallTool: sys_call_tool, c.ListTools: sys_list_tools}
