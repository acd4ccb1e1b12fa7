"""`llmasos shell` in a real pseudo-terminal (pexpect): what a first-time user types, end to end."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

PROMPT = "llmasos>"


def spawn_shell(home: Path, *args: str, timeout: float = 20) -> pexpect.spawn:
    env = dict(os.environ, LLMASOS_HOME=str(home), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1",
               HF_HUB_OFFLINE="1", COLUMNS="120", LINES="40")
    child = pexpect.spawn(sys.executable, ["-m", "llmasos.cli", "shell", *args], env=env,
                          encoding="utf-8", timeout=timeout, dimensions=(40, 120))
    child.logfile_read = open(home / "session.log", "w")  # noqa: SIM115 - closed with the child
    return child


def finish(child: pexpect.spawn) -> int:
    """Wait for the shell to exit; its exit status."""
    child.expect(pexpect.EOF)
    child.close()
    child.logfile_read.close()
    return child.exitstatus


def transcript(home: Path) -> str:
    """The session as a person saw it on the screen (for docs and the issue note)."""
    with open(home / "session.log", newline="") as f:  # keep the \r the terminal got
        return render_screen(f.read())


_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([a-zA-Z])|\x1b[=>]|[\r\n\b]|[^\x1b\r\n\b]")


def render_screen(raw: str) -> str:
    """A tiny terminal: cursor moves, line and screen clears, overwrite; enough for prompt_toolkit."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for m in _TOKEN.finditer(raw):
        tok, args, cmd = m.group(0), m.group(1), m.group(2)
        n = int(args) if args and args.isdigit() else 1
        if cmd == "A":
            row = max(row - n, 0)
        elif cmd == "B":
            row += n
        elif cmd == "C":
            col += n
        elif cmd == "D":
            col = max(col - n, 0)
        elif cmd == "H":
            row = col = 0
        elif cmd == "J" and args == "2":
            lines = [[] for _ in lines]
        elif cmd == "J":
            del lines[row][col:]
            del lines[row + 1:]
        elif cmd == "K":
            if args == "2":
                lines[row].clear()
            else:
                del lines[row][col:]
        elif cmd or tok.startswith("\x1b"):
            continue  # colours, modes
        elif tok == "\r":
            col = 0
        elif tok == "\n":
            row += 1
        elif tok == "\b":
            col = max(col - 1, 0)
        else:
            line = lines[row]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = tok
            col += 1
        while len(lines) <= row:
            lines.append([])
    return "\n".join("".join(line).rstrip() for line in lines)


def first_session(child: pexpect.spawn, question: str, answer: str, answer_timeout: float) -> None:
    """help, spawn chat, attach 1, talk, detach, ps, kill 1, exit."""
    child.expect(PROMPT, timeout=answer_timeout)  # the model has loaded
    child.sendline("help")
    child.expect(r"attach PID")
    child.expect(PROMPT)
    child.sendline("spawn chat")
    child.expect(r"\[1\] chat")
    child.expect(PROMPT)
    child.sendline("attach 1")
    child.expect(r"Ctrl-\] detaches")
    child.sendline(question)
    child.expect(answer, timeout=answer_timeout)
    child.expect(r"\r\n", timeout=answer_timeout)  # the end of the answer
    child.sendcontrol("]")
    child.expect(r"detached from \[1\]")
    child.expect(PROMPT)
    child.sendline("ps")
    child.expect(r"1 +0 +chat +(waiting:stdin|running)")
    child.expect(PROMPT)
    child.sendcontrol("c")  # Ctrl-C at the prompt does not exit
    child.expect(PROMPT)
    child.sendline("kill 1")
    child.expect(r"\[1\] chat killed")
    child.expect(PROMPT)
    child.sendline("exit")
    assert finish(child) == 0


def test_shell_in_a_terminal_on_the_fake_model(tmp_path: Path) -> None:
    child = spawn_shell(tmp_path, "--model", "fake")
    first_session(child, "What is the capital of France?", r"echo: system: .*user: What is the capital", 20)
    seen = transcript(tmp_path)
    assert "llmasos shell · model fake" in seen
    assert (tmp_path / "shell_history").read_text().count("spawn chat") == 1


def test_background_notice_and_bad_input_in_a_terminal(tmp_path: Path) -> None:
    child = spawn_shell(tmp_path, "--model", "fake")
    child.expect(PROMPT)
    child.sendline("spwan echo hi")
    child.expect(r"did you mean 'spawn'")
    child.expect(PROMPT)
    child.sendline("spawn echo hi")
    child.expect(r"\[1\] exited: 'hi'")
    child.expect(PROMPT)
    child.sendline("attach 1")
    child.expect(r"has exited; logs 1 shows its output")
    child.expect(PROMPT)
    sleeper = Path(__file__).parent.parent / "apps_for_tests.py"
    child.sendline(f"spawn {sleeper}:sleeper 1")
    child.expect(r"\[2\] sleeper")
    child.expect(PROMPT)
    child.send("help hel")  # half-typed when the notice arrives
    child.expect(r"\[2\] exited: 'rested'")
    child.send("p\r")  # the line survived the notice
    child.expect(r"usage: help \[COMMAND\]")
    child.expect(PROMPT)
    child.sendcontrol("d")  # Ctrl-D exits (nothing runs, so it does not ask)
    assert finish(child) == 0


@pytest.mark.slow
def test_shell_in_a_terminal_on_the_real_default_model(tmp_path: Path) -> None:
    """The README's command: the default model answers a question through attach."""
    homes = [Path(os.environ["LLMASOS_HOME"])] if os.environ.get("LLMASOS_HOME") else []
    for cache in [h / "models" for h in [*homes, Path.home() / ".llmasos"]]:
        if (cache / "smollm2-135m").is_dir():  # reuse the converted model (else: ~30 s to convert)
            (tmp_path / "models").symlink_to(cache)
            break
    child = spawn_shell(tmp_path, timeout=30)
    first_session(child, "What is the capital of France?", r"Paris", 180)
    seen = transcript(tmp_path)
    assert "model smollm2-135m" in seen
    out = os.environ.get("LLMASOS_SHELL_TRANSCRIPT")
    if out:
        Path(out).write_text(seen)
