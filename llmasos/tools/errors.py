"""Errors of the tool subsystem, all of them ``ToolError`` (a ``SyscallError``) so a process can catch them.

Rule: a tool's own failure never escapes as anything else: the dispatcher wraps whatever the tool
raised, and the message says which tool failed and what to change.
"""

from __future__ import annotations

from llmasos.syscalls.errors import InvalidArguments, ToolError


class UnknownTool(ToolError):
    """No tool by that name is registered (built-in, @tool-decorated, or from an installed package)."""


class ToolArgumentsInvalid(ToolError, InvalidArguments):
    """The arguments do not fit the tool's schema (wrong type, missing or extra)."""


class ToolTimeout(ToolError, TimeoutError):
    """The tool did not finish within its timeout."""


class ToolFailed(ToolError):
    """The tool raised an exception; its type and message are kept in this one's message."""


class ToolResultInvalid(ToolError):
    """The tool returned something that is not JSON-serialisable."""


class NoToolCall(ToolError):
    """A tool call was required, and a model whose decoding is not constrained (a remote server) gave
    no valid one."""


class PathOutsideJail(ToolError):
    """A file tool was given a path that leaves the process's own directory."""


__all__ = [
    "NoToolCall", "PathOutsideJail", "ToolArgumentsInvalid", "ToolError", "ToolFailed", "ToolResultInvalid",
    "ToolTimeout", "UnknownTool",
]
