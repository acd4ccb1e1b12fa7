"""The syscall table: syscall type -> handler, written out explicitly (after xv6's syscall.c).

Rule: every syscall the kernel offers is listed here, family by family; nothing is found by magic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from llmasos.kernel import sys_llm, sys_memory, sys_proc, sys_tools
from llmasos.kernel.sys_proc import ExitProcess

Handler = Callable[[Any, Any, Any], Awaitable[Any]]

TABLE: dict[type, Handler] = {
    **sys_proc.HANDLERS,  # spawn kill wait getpid ps sleep exit send recv readline write stdin setpolicy
    **sys_llm.HANDLERS,  # generate score models
    **sys_tools.HANDLERS,  # call_tool list_tools
    **sys_memory.HANDLERS,  # memget memset memdelete memkeys remember search chat context
}

__all__ = ["TABLE", "ExitProcess", "Handler"]
