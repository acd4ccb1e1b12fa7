"""llmasos: an operating system for LLM agents.

Apps run as processes; a process reaches the model, its tools and its memory only through syscalls
on the ``Sys`` handle it is given; the kernel batches every process's generate calls into the model's
forward steps.
"""

from llmasos.api import LLM, Application
from llmasos.apps.app import App
from llmasos.errors import LlmasosError
from llmasos.kernel import Kernel, KernelConfig, ProcState
from llmasos.syscalls import Completion, ExitStatus, Message, ProcInfo, Sys
from llmasos.tools import Tool, ToolContext, tool  # -- tools

__version__ = "0.1.0"

__all__ = [
    "App", "Application", "Completion", "ExitStatus", "Kernel", "KernelConfig", "LLM", "LlmasosError", "Message", "ProcInfo",
    "ProcState", "Sys", "__version__",
    "Tool", "ToolContext", "tool",  # -- tools
]
