"""The kernel: process table, run loop, syscall dispatch, scheduling policies, config."""

from llmasos.kernel.config import KernelConfig, llmasos_home
from llmasos.kernel.errors import KernelNotRunning
from llmasos.kernel.kernel import Kernel, current_sys
from llmasos.kernel.proc import ProcState

__all__ = ["Kernel", "KernelConfig", "KernelNotRunning", "ProcState", "current_sys", "llmasos_home"]
