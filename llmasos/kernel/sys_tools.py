"""Handlers for the tool syscalls.

Rule: handlers are thin. The capability check (may this process use this tool?) already happened at
the chokepoint; here the tool is looked up, given the caller's context, and run by tools/invoke.py,
which turns every failure into a ToolError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmasos.memory.keys import current_idempotency_key  # set by the journal around each call
from llmasos.syscalls import calls as c
from llmasos.tools.invoke import invoke
from llmasos.tools.registry import REGISTRY, ToolContext

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process


def tool_context(k: Kernel, p: Process) -> ToolContext:
    """What a tool called by p may know: its pid, its own directory, its Sys, the idempotency key."""
    from llmasos.kernel.kernel import current_sys

    return ToolContext(pid=p.pid, home=k.config.home / "procs" / str(p.pid), sys=current_sys.get(),
                       kernel=k, proc=p, idempotency_key=current_idempotency_key())


async def sys_call_tool(k: Kernel, p: Process, call: c.CallTool) -> Any:
    return await invoke(REGISTRY.get(call.tool), call.arguments, tool_context(k, p), call.timeout)


async def sys_list_tools(k: Kernel, p: Process, call: c.ListTools) -> list[dict[str, Any]]:
    return [t.schema for t in REGISTRY.all(p.caps.tools)]


HANDLERS = {c.CallTool: sys_call_tool, c.ListTools: sys_list_tools}
