"""The HTTP API's status codes for llmasos errors, and its own errors.

Rule: a typed llmasos error is answered with the status code in ``STATUS`` and the error body of
client/wire.py (which clients turn back into the same class); the most specific class in an error's
MRO wins, and anything unknown is a 500.
"""

from __future__ import annotations

from llmasos.client.kernel import ConfigError, KernelNotRunning
from llmasos.client.records import NotAvailable
from llmasos.client.wire import ApiError, Unauthorized
from llmasos.engine.errors import EngineSetupError
from llmasos.errors import LlmasosError
from llmasos.syscalls import errors as se
from llmasos.tools.errors import UnknownTool


class ServeError(ApiError):
    """The API could not be served (its address is taken, say)."""


# class -> (HTTP status, OpenAI error type); the most specific class in an error's MRO wins.
STATUS: dict[type[BaseException], tuple[int, str]] = {
    Unauthorized: (401, "authentication_error"),
    se.PermissionDenied: (403, "permission_error"),
    se.NoSuchProcess: (404, "not_found_error"),
    se.NoSuchApp: (404, "not_found_error"),
    UnknownTool: (404, "not_found_error"),
    se.NoSuchModel: (404, "not_found_error"),
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
