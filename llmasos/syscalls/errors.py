"""Errors a syscall raises inside the calling process.

Rule: a handler failure reaches the app as one of these, never as a kernel crash. Each carries a
message that tells the user what to do next.
"""

from __future__ import annotations

from llmasos.errors import LlmasosError


class SyscallError(LlmasosError):
    """A syscall failed; the process may catch this and go on."""


class NoSuchProcess(SyscallError):
    """The pid is unknown, or its process was already reaped."""


class NoSuchApp(SyscallError):
    """No app by that name or path could be found."""


class InvalidArguments(SyscallError):
    """The arguments do not fit the app's main function or the syscall."""


class NoSuchModel(InvalidArguments):
    """No loaded model by that name (the kernel's model table lists the loaded ones)."""


class ModelUnavailable(NoSuchModel):
    """A model of the model library could not be loaded (its load error, kept until its entry changes)."""


class PermissionDenied(SyscallError):
    """The process lacks the capability this syscall needs."""


class QuotaExceeded(SyscallError):
    """The process used up a token or syscall budget."""


class ProcessLimit(SyscallError):
    """The kernel's process table is full."""


class RecvTimeout(SyscallError, TimeoutError):
    """No message arrived before the timeout."""


class ContextOverflow(SyscallError):
    """The prompt plus max_tokens does not fit the model's context window."""


class ToolError(SyscallError):
    """A tool failed, timed out, or was called with arguments that do not fit its schema."""


class EngineError(SyscallError):
    """The model engine failed while serving this request."""


class NotSupported(SyscallError):
    """The kernel or its engine does not offer this syscall."""


class ReplayMismatch(SyscallError):
    """On recovery the app asked for a different syscall than its journal recorded."""


class WaitTimeout(SyscallError, TimeoutError):
    """The process did not end before the timeout."""


class MailboxFull(SyscallError):
    """The receiver's mailbox holds too many unread messages."""


class ProcessKilled(SyscallError):
    """The process that served this request was killed (by a user, a parent or the kernel) before it ended."""
