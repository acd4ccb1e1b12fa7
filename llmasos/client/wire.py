"""Both ends of the HTTP API's wire: how llmasos errors travel over it, and its bearer token.

Rule: a typed llmasos error becomes ``{"error": {"message", "type", "code"}}`` (OpenAI's error shape;
``code`` is the llmasos class name); ``error_from`` turns it back into the same class, so a face shows a
daemon's errors exactly as it shows a local kernel's. The server's status codes are in api/errors.py.
The daemon never serves without a token: ``LLMASOS_API_TOKEN`` wins; otherwise it is read from
``$LLMASOS_HOME/api_token``, which the first ``llmasos serve`` creates (mode 0600, so only the user who
runs the daemon, and their clients, can read it). This module stays light (no kernel, no engine),
because every remote client imports it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from llmasos.errors import LlmasosError
from llmasos.home import private_dir

DEFAULT_URL = "http://127.0.0.1:8765"
ENV = "LLMASOS_API_TOKEN"
FILENAME = "api_token"


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


# -- the API token ---------------------------------------------------------------------------------


def token_path(home: Path) -> Path:
    return Path(home) / FILENAME


def server_token(home: Path) -> tuple[str, str]:
    """(token, where it came from) for a daemon: the environment, the token file, or a new token file."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return env, f"${ENV}"
    path = token_path(home)
    token = read_token(path)
    if token is None:
        private_dir(path.parent)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another daemon wrote it first: use theirs
            token = read_token(path)
            if token is None:
                raise
        else:
            os.fchmod(fd, 0o600)  # (whatever the umask)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
    return token, str(path)


def client_token(home: Path, token: str | None = None) -> str | None:
    """The token a client sends: given, else ``$LLMASOS_API_TOKEN``, else the token file (None: none)."""
    if token:
        return token
    env = os.environ.get(ENV, "").strip()
    if env:
        return env
    return read_token(token_path(home))


def read_token(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a token others can read is no secret
    except OSError:
        pass
    return text or None
