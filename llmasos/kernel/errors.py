"""The kernel's own errors, and the one rule for blaming a failed syscall on the right party.

Rule: only argument validation is the caller's fault (``InvalidArguments``, raised by the code that
validates). Any other exception a handler lets through is a bug in llmasos or in a plugin (an engine, a
store): the process gets a ``SyscallError`` that says it is an internal error, and the kernel log gets
the traceback. Never a kernel crash.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from llmasos.errors import LlmasosError
from llmasos.syscalls.errors import InvalidArguments, SyscallError

if TYPE_CHECKING:
    from llmasos.syscalls.calls import Syscall

log = logging.getLogger("llmasos.kernel")


class KernelNotRunning(LlmasosError):
    """The kernel has not been booted, or was shut down."""


class InternalError(SyscallError):
    """A syscall failed inside the kernel (a bug, not the caller's arguments); the log has the traceback."""


def blame(call: Syscall, exc: BaseException) -> SyscallError:
    """The error a process sees when its call's handler raised exc unexpectedly; logs the traceback.

    A RecursionError is the one exception blamed on the caller: its arguments nest too deeply for the
    kernel to copy, trace or store them (a thousand levels of lists, say)."""
    if isinstance(exc, RecursionError):
        return InvalidArguments(f"{call.name}: its arguments nest too deeply to be handled; flatten them")
    log.error("internal error in syscall %s", call.name, exc_info=exc)
    return InternalError(f"{call.name} failed with an internal error ({type(exc).__name__}: {exc}); this is "
                         "a bug in llmasos or one of its plugins, not in your arguments: the kernel log "
                         "(logger 'llmasos.kernel') has the traceback")
