"""The HTTP API's bearer token: where it comes from, and where a client finds it.

Rule: the daemon never serves without a token. ``LLMASOS_API_TOKEN`` wins; otherwise the token is read
from ``$LLMASOS_HOME/api_token``, which the first ``llmasos serve`` creates (mode 0600, so only the
user who runs the daemon, and their clients, can read it).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV = "LLMASOS_API_TOKEN"
FILENAME = "api_token"


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
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another daemon wrote it first: use theirs
            token = read_token(path)
            if token is None:
                raise
        else:
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
