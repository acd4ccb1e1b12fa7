"""The syscall interface apps use: the Sys handle, syscall values, results and errors."""

from llmasos.syscalls import calls
from llmasos.syscalls.errors import (
    ContextOverflow, EngineError, InvalidArguments, MailboxFull, ModelUnavailable, NoSuchApp, NoSuchModel,
    NoSuchProcess, NotSupported, PermissionDenied, ProcessKilled, ProcessLimit, QuotaExceeded, RecvTimeout,
    ReplayMismatch, SyscallError, ToolError, WaitTimeout,
)
from llmasos.syscalls.sys import Sys
from llmasos.syscalls.types import Completion, ExitStatus, Message, ModelInfo, ProcInfo, ToolCall, Usage

__all__ = [
    "Completion", "ContextOverflow", "EngineError", "ExitStatus", "InvalidArguments", "MailboxFull",
    "Message", "ModelInfo", "ModelUnavailable", "NoSuchApp", "NoSuchModel", "NoSuchProcess", "NotSupported",
    "PermissionDenied", "ProcInfo", "ProcessKilled", "ProcessLimit", "QuotaExceeded", "RecvTimeout", "ReplayMismatch", "Sys", "SyscallError",
    "ToolCall", "ToolError", "Usage", "WaitTimeout", "calls",
]
