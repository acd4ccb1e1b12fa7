"""How llmasos errors travel over the HTTP API, as both ends of the wire see them.

Rule: a typed llmasos error becomes ``{"error": {"message", "type", "code"}}`` (OpenAI's error shape;
``code`` is the llmasos class name); ``error_from`` turns it back into the same class, so a face shows a
daemon's errors exactly as it shows a local kernel's. The server's status codes are in api/errors.py;
this module stays light (no kernel, no engine), because every remote client imports it.
"""

from __future__ import annotations

from typing import Any

from llmasos.errors import LlmasosError

DEFAULT_URL = "http://127.0.0.1:8765"


class ApiError(LlmasosError):
    """The HTTP API refused a request, or a client could not talk to it."""


class Unauthorized(ApiError):
    """The request carried no bearer token, or the wrong one."""


class DaemonUnreachable(ApiError):
    """No llmasos daemon answers at the URL."""


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
