"""files: read, write, list and delete files inside the calling process's own directory.

Rule: the jail is ``$LLMASOS_HOME/procs/<run>-<pid>/`` (``kernel/sys_tools.py: jail``), private to the
user (directories 0700, files 0600). A path is refused (``PathOutsideJail``) when it is
absolute, contains ``..``, or resolves, through any symlink, to somewhere outside the jail. Writes go
to a temporary file that is renamed into place, so a write repeated after a crash leaves the same
file, and deleting a missing file is not an error: both are idempotent by construction, which is what
the syscall journal needs when it re-runs a call that was in flight. What one call may read, write or
list is bounded by ``ToolLimits`` (tools/limits.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

from llmasos.home import private_dir
from llmasos.tools.errors import PathOutsideJail
from llmasos.tools.limits import TOOL_LIMITS as LIMITS
from llmasos.tools.registry import ToolContext, tool


def jail_of(ctx: ToolContext) -> Path:
    """The calling process's directory, created on first use."""
    if ctx.home is None:
        raise PathOutsideJail("the files tool needs a process directory; call it through sys.call_tool")
    private_dir(ctx.home)
    return ctx.home.resolve()


def resolve(jail: Path, path: str) -> Path:
    """path inside jail, or PathOutsideJail saying why not."""
    if not isinstance(path, str) or "\x00" in path:
        raise PathOutsideJail("a path is a string without NUL characters")
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or (len(path) > 1 and path[1] == ":"):
        raise PathOutsideJail(f"{path!r} is absolute; give a path relative to your own directory")
    if ".." in pure.parts:
        raise PathOutsideJail(f"{path!r} contains '..'; paths must stay inside your own directory")
    target = (jail / pure).resolve()  # follows every symlink on the way
    if target != jail and not target.is_relative_to(jail):
        raise PathOutsideJail(f"{path!r} leads outside your own directory (through a symlink)")
    return target


def _rel(jail: Path, p: Path) -> str:
    return str(p.relative_to(jail)) if p != jail else "."


@tool(timeout=10.0)
def files(action: Literal["read", "write", "list", "delete"], path: str = ".", content: str | None = None,
          ctx: ToolContext = None) -> dict[str, object]:  # type: ignore[assignment]
    """Read, write, list or delete files in your own directory.

    Args:
        action: "read", "write", "list" or "delete"
        path: a path relative to your own directory
        content: the text to write (for "write")
    """
    jail = jail_of(ctx)
    target = resolve(jail, path)
    rel = _rel(jail, target)
    if action == "list":
        if not target.is_dir():
            raise FileNotFoundError(f"{rel} is not a directory")
        entries = sorted(target.iterdir())[:LIMITS.list_entries]
        return {"path": rel, "entries": [e.name + ("/" if e.is_dir() else "") for e in entries]}
    if action == "read":
        if not target.is_file():
            raise FileNotFoundError(f"no file {rel}; list the directory to see what exists")
        text = target.read_text(encoding="utf-8", errors="replace")
        return {"path": rel, "content": text[:LIMITS.read_chars], "truncated": len(text) > LIMITS.read_chars}
    if action == "write":
        if content is None:
            raise ValueError("write needs content")
        if len(content) > LIMITS.write_chars:
            raise ValueError(f"content is {len(content)} characters; the limit is {LIMITS.write_chars}")
        if target == jail or target.is_dir():
            raise IsADirectoryError(f"{rel} is a directory")
        private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return {"path": rel, "written": len(content)}
    if action == "delete":
        if target == jail:
            raise PermissionError("you cannot delete your own directory")
        if target.is_dir():
            target.rmdir()  # only when empty: no recursive deletes
            return {"path": rel, "deleted": True}
        existed = target.exists()
        target.unlink(missing_ok=True)
        return {"path": rel, "deleted": existed}
    raise ValueError(f"unknown action {action!r}")
