"""Errors of the HTTP API, and how llmasos errors travel over it.

Rule: a typed llmasos error becomes ``{"error": {"message", "type", "code"}}`` (OpenAI's error shape;
``code`` is the llmasos class name) with the status code in ``STATUS``; ``RemoteClient`` turns it back
into the same class, so the shell shows a daemon's errors exactly as it shows a local kernel's.
"""

from __future__ import annotations

from typing import Any

from llmasos.engine.errors import EngineSetupError
from llmasos.errors import LlmasosError
from llmasos.kernel.config import ConfigError
from llmasos.kernel.kernel import KernelNotRunning
from llmasos.shell.client import NotAvailable
from llmasos.syscalls import errors as se
from llmasos.tools.errors import UnknownTool


class ApiError(LlmasosError):
    """The HTTP API refused a request, or a client could not talk to it."""


class Unauthorized(ApiError):
    """The request carried no bearer token, or the wrong one."""


class DaemonUnreachable(ApiError):
    """No llmasos daemon answers at the URL."""


class ServeError(ApiError):
    """The API could not be served (its address is taken, say)."""


# class -> (HTTP status, OpenAI error type); the most specific class in an error's MRO wins.
STATUS: dict[type[BaseException], tuple[int, str]] = {
    Unauthorized: (401, "authentication_error"),
    se.PermissionDenied: (403, "permission_error"),
    se.NoSuchProcess: (404, "not_found_error"),
    se.NoSuchApp: (404, "not_found_error"),
    UnknownTool: (404, "not_found_error"),
    se.WaitTimeout: (408, "timeout_error"),
    se.RecvTimeout: (408, "timeout_error"),
    se.ReplayMismatch: (409, "conflict_error"),
    se.InvalidArguments: (400, "invalid_request_error"),
    se.ContextOverflow: (400, "invalid_request_error"),
    ConfigError: (400, "invalid_request_error"),
    se.QuotaExceeded: (429, "rate_limit_error"),
    se.MailboxFull: (429, "rate_limit_error"),
    se.ProcessLimit: (503, "overloaded_error"),
    KernelNotRunning: (503, "overloaded_error"),
    se.NotSupported: (501, "not_supported_error"),
    NotAvailable: (501, "not_supported_error"),
    se.EngineError: (500, "server_error"),
    EngineSetupError: (500, "server_error"),
    LlmasosError: (400, "invalid_request_error"),  # any other error the user can act on
}


def status_of(exc: BaseException) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "server_error"


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


def _classes() -> dict[str, type[LlmasosError]]:
    out: dict[str, type[LlmasosError]] = {}
    pending: list[type[LlmasosError]] = [LlmasosError]
    while pending:  # every LlmasosError subclass imported so far, by name
        cls = pending.pop()
        out.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return out


def error_from(body: Any, status: int) -> LlmasosError:
    """The llmasos error an error response stands for (LlmasosError when the class is unknown here)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return ApiError(f"the daemon answered HTTP {status}: {str(body)[:200]}")
    message = str(err.get("message") or f"HTTP {status}")
    cls = _classes().get(str(err.get("code") or ""), LlmasosError)
    try:
        return cls(message)
    except Exception:  # a subclass with another constructor
        return LlmasosError(message)
