"""Handlers for the tool syscalls.

Rule: handlers are thin. The capability check (may this process use this tool?) already happened at
the chokepoint; here the tool is looked up, given its port (``ToolContext``: never the kernel), and run
by tools/invoke.py, which turns every failure into a ToolError.
"""

from __future__ import annotations

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
    """The port a tool called by p gets: p's pid, its jail, the call's idempotency key, and p's chokepoint
    for the few syscalls a tool may make (never the kernel itself)."""

    async def trap(call: Syscall) -> Any:
        return await k.syscall(p, call)

    return ToolContext(pid=p.pid, home=k.config.home / "procs" / str(p.pid),
                       idempotency_key=current_idempotency_key(), _trap=trap)


async def sys_call_tool(k: Kernel, p: Process, call: c.CallTool) -> Any:
    return await invoke(REGISTRY.get(call.tool), call.arguments, tool_context(k, p), call.timeout)


async def sys_list_tools(k: Kernel, p: Process, call: c.ListTools) -> list[dict[str, Any]]:
    return [t.schema for t in REGISTRY.all(p.caps.tools)]


HANDLERS = {c.CallTool: sys_call_tool, c.ListTools: sys_list_tools}
