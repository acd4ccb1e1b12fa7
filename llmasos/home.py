"""Where llmasos keeps its files: ``$LLMASOS_HOME``, or ``~/.llmasos``.

Rule: the one definition of the home directory, importable from every layer (it imports nothing of
llmasos): the database, the converted models, the native library, the API token, the shell's history
and the processes' tool jails all live under it. It is private to its user: whatever llmasos creates
there is made with ``private_dir`` (0700) or ``private_file`` (0600), never with the umask's modes.
"""

from __future__ import annotations

import os
from pathlib import Path


def llmasos_home() -> Path:
    """Where llmasos keeps its database, models, history and tool jails ($LLMASOS_HOME or ~/.llmasos)."""
    return Path(os.environ.get("LLMASOS_HOME") or Path.home() / ".llmasos").expanduser()


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """path as a directory only its owner may use (0700, whatever the umask), made with any missing
    parents (0700 too). tighten: an existing path that others may read is made 0700 as well (leave it
    False for a directory llmasos does not own, such as the parent of a database the user named)."""
    path = Path(path)
    missing = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made meanwhile by another process: keep going
            continue
        os.chmod(folder, 0o700)
    if tighten and not missing and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Make sure path exists (empty if it did not) and only its owner may read or write it (0600,
    whatever the umask). An existing file is never opened, only its mode changed if others may read it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return path
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path
