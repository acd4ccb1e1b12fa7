"""llmasos: an operating system for LLM agents.

Apps run as processes; a process reaches the model, its tools and its memory only through syscalls
on the ``Sys`` handle it is given; the kernel batches every process's generate calls into the model's
forward steps.

Rule: every public name is importable from here (``from llmasos import Kernel``), but each is loaded on
first use (PEP 562), so a face that imports ``llmasos.cli`` or ``llmasos.client.remote`` does not load
the kernel, the engine or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "App": "llmasos.apps.app",
    "Application": "llmasos.api",
    "Completion": "llmasos.syscalls",
    "ExitStatus": "llmasos.syscalls",
    "Kernel": "llmasos.kernel",
    "KernelConfig": "llmasos.kernel",
    "LLM": "llmasos.api",
    "LlmasosError": "llmasos.errors",
    "Message": "llmasos.syscalls",
    "ProcInfo": "llmasos.syscalls",
    "ProcState": "llmasos.kernel",
    "Sys": "llmasos.syscalls",
    "Tool": "llmasos.tools",
    "ToolContext": "llmasos.tools",
    "tool": "llmasos.tools",
}

__all__ = [
    "App", "Application", "Completion", "ExitStatus", "Kernel", "KernelConfig", "LLM", "LlmasosError", "Message",
    "ProcInfo", "ProcState", "Sys", "Tool", "ToolContext", "__version__", "tool",
]

if TYPE_CHECKING:
    from llmasos.api import LLM, Application
    from llmasos.apps.app import App
    from llmasos.errors import LlmasosError
    from llmasos.kernel import Kernel, KernelConfig, ProcState
    from llmasos.syscalls import Completion, ExitStatus, Message, ProcInfo, Sys
    from llmasos.tools import Tool, ToolContext, tool


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'llmasos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
