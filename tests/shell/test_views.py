"""strace and logs -f say how a process ended after its last lines; `clear` (issue 14, finding 11)."""

from __future__ import annotations

from pathlib import Path

APPS = Path(__file__).with_name("terminal_apps.py")


async def view_to_the_end(shell_at, view: str, lines: int) -> str:
    """spawn the chatter app, run view on it until it ends; all the shell printed."""
    async with shell_at() as sh:
        await sh.run(f"spawn {APPS}:chatter --lines={lines}", r"\[1\] chatter")
        await sh.ready()
        sh.line(view)
        await sh.expect(r"\[1\] exited: 'done'")
        await sh.settle()
        return sh.text


async def test_strace_says_exited_after_the_last_syscall_lines(shell_at) -> None:
    text = await view_to_the_end(shell_at, "strace 1", 3)
    assert text.rfind("write(") < text.rfind("[1] exited: 'done'"), text
    assert text.count("[1] exited") == 1, text


async def test_logs_f_says_exited_after_the_last_lines(shell_at) -> None:
    text = await view_to_the_end(shell_at, "logs 1 -f", 40)
    assert text.rfind("line 39") < text.rfind("[1] exited: 'done'"), text
    assert text.count("[1] exited") == 1, text


async def test_clear_clears_the_screen(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("help", r"clear +Clear the screen")
        await sh.ready()
        sh.line("clear")
        await sh.expect(r"\x1b\[H\x1b\[2J")
        await sh.run("help clear", r"usage: clear")
        await sh.run("clear now", r"clear: takes no arguments")
