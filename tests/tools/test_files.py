"""files: a jail per process; traversal by '..', absolute paths and symlinks is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmasos.tools import PathOutsideJail, ToolContext
from llmasos.tools.builtin.files import files


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(pid=7, home=tmp_path / "procs" / "7")


def test_write_read_list_delete(ctx: ToolContext) -> None:
    assert files("write", "notes/a.txt", "hello", ctx=ctx) == {"path": "notes/a.txt", "written": 5}
    assert files("read", "notes/a.txt", ctx=ctx)["content"] == "hello"
    assert files("list", "notes", ctx=ctx)["entries"] == ["a.txt"]
    assert files("list", ctx=ctx)["entries"] == ["notes/"]
    assert files("delete", "notes/a.txt", ctx=ctx)["deleted"] is True
    assert files("delete", "notes/a.txt", ctx=ctx)["deleted"] is False  # idempotent
    assert (ctx.home / "notes").is_dir()


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "..", "C:/x", "a/\x00"])
def test_escapes_are_refused(ctx: ToolContext, path: str) -> None:
    for action in ("read", "write", "list", "delete"):
        with pytest.raises(PathOutsideJail):
            files(action, path, "data", ctx=ctx)


def test_symlink_out_of_the_jail_is_refused(ctx: ToolContext, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    ctx.home.mkdir(parents=True)
    os.symlink(outside, ctx.home / "link.txt")
    os.symlink(tmp_path, ctx.home / "dirlink")
    with pytest.raises(PathOutsideJail, match="symlink"):
        files("read", "link.txt", ctx=ctx)
    with pytest.raises(PathOutsideJail):
        files("write", "dirlink/new.txt", "x", ctx=ctx)
    assert not (tmp_path / "new.txt").exists()
    assert outside.read_text() == "top secret"


def test_symlink_inside_the_jail_is_fine(ctx: ToolContext) -> None:
    files("write", "real.txt", "ok", ctx=ctx)
    os.symlink(ctx.home / "real.txt", ctx.home / "alias.txt")
    assert files("read", "alias.txt", ctx=ctx)["content"] == "ok"


def test_without_a_process_directory_it_refuses() -> None:
    with pytest.raises(PathOutsideJail):
        files("list", ctx=ToolContext())
