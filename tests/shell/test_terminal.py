"""The shell, `llmasos run` and attach in a real pseudo-terminal as tmux presents it (TERM=tmux-256color):
the terminal answers cursor-position requests (CPR), so prompt_toolkit reserves rows and redraws as it
does for a person. Each test here failed before its fix."""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest

from tests.daemon import daemon_env, start_daemon, stop_daemon
from tests.shell.test_pty import _TOKEN, render_screen

PROMPT = "llmasos>"
APPS = Path(__file__).with_name("terminal_apps.py")
CPR = "\x1b[6n"
ROWS, COLS = 40, 120


class Term:
    """A child in a tmux-like terminal: a reader thread answers each cursor-position request at once, as a
    terminal does, and keeps everything the child wrote."""

    def __init__(self, home: Path, *args: str, timeout: float = 20, env: dict[str, str] | None = None) -> None:
        env = dict(env or os.environ, LLMASOS_HOME=str(home), TERM="tmux-256color", HF_HUB_OFFLINE="1",
                   COLUMNS=str(COLS), LINES=str(ROWS))
        env.pop("PROMPT_TOOLKIT_NO_CPR", None)
        self.log = home / "session.log"
        self.timeout = timeout
        self.child = pexpect.spawn(sys.executable, ["-m", "llmasos.cli", *args], env=env, encoding="utf-8",
                                   timeout=timeout, dimensions=(ROWS, COLS))
        self.child.delaybeforesend = None  # a terminal answers at once
        self.raw = ""
        self.cursor = Cursor()
        self.pos = 0  # expect() searches from here
        self.eof = threading.Event()
        self.lock = threading.Lock()
        # The answers to cursor-position requests are written by a thread of their own: written by the
        # reader, one blocks it while the child's input is full (a long paste sent by the test), the
        # child then blocks writing its output, which nothing reads, and nothing moves (seen on a loaded CI)
        self.answers: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._answer, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(4096, timeout=None)
            except (pexpect.EOF, OSError, ValueError):
                self.eof.set()
                self.answers.put(None)
                return
            for part in re.split(f"({re.escape(CPR)})", data):  # (a request cut between reads is missed)
                if part == CPR:
                    self.answers.put(f"\x1b[{self.cursor.screen_row + 1};1R")
                self.cursor.feed(part)
            with self.lock:
                self.raw += data

    def _answer(self) -> None:
        while (answer := self.answers.get()) is not None:
            try:
                self.child.send(answer)
            except (OSError, ValueError):
                return

    def expect(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        """Wait until pattern appears in the raw output after the last match; move past it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            with self.lock:
                m = regex.search(self.raw, self.pos)
            if m:
                self.pos = m.end()
                return m
            if self.eof.is_set():
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} did not appear; the screen:\n{self.screen()}")

    def sendline(self, text: str) -> None:
        self.child.send(text + "\r")

    def sendcontrol(self, char: str) -> None:
        self.child.sendcontrol(char)

    def screen(self) -> str:
        with self.lock:
            raw = self.raw
        self.log.write_text(raw)
        return render_screen(raw)

    def finish(self, timeout: float = 20) -> int:
        """Wait for the child to exit; its exit status."""
        if not self.eof.wait(timeout):
            raise AssertionError(f"it did not exit; the screen:\n{self.screen()}")
        self.child.close()
        return self.child.exitstatus


class Cursor:
    """Where the cursor is on a ROWS-high screen that scrolls, as text is written (row 0 at the top)."""

    def __init__(self) -> None:
        self.row = self.top = 0
        self.tail = ""  # an escape sequence cut between two reads

    def feed(self, text: str) -> None:
        text, self.tail = self.tail + text, ""
        cut = text.rfind("\x1b")
        if cut != -1 and not re.match(r"\x1b(\[[0-9;?]*[a-zA-Z]|[=>])", text[cut:]):
            text, self.tail = text[:cut], text[cut:]
        for m in _TOKEN.finditer(text):
            args, cmd = m.group(1), m.group(2)
            n = int(args) if args and args.isdigit() else 1
            if cmd == "A":
                self.row = max(self.row - n, self.top)
            elif cmd == "B":
                self.row = min(self.row + n, self.top + ROWS - 1)
            elif m.group(0) == "\n":
                self.row += 1
                self.top = max(self.top, self.row - ROWS + 1)

    @property
    def screen_row(self) -> int:
        return self.row - self.top


ANSWER = " ".join(f"w{i}" for i in range(40)) + " the end of hello."


def spawn_one(term: Term, spec: str, name: str) -> None:
    """At a fresh shell's prompt: spawn spec as pid 1, back at the prompt."""
    term.expect(PROMPT)
    term.sendline(f"spawn {spec}")
    term.expect(rf"\[1\] {name}")
    term.expect(PROMPT)


def talk(term: Term) -> None:
    """spawn the dribbling app, attach, ask, wait for the end of the answer, detach."""
    spawn_one(term, f"{APPS}:dribble", "dribble")
    term.sendline("attach 1")
    term.expect(r"Ctrl-\] detaches")
    term.sendline("hello")
    term.expect(r"the end of hello\.")
    term.sendcontrol("]")
    term.expect(r"detached from \[1\]")
    term.expect(PROMPT)


def test_a_streamed_answer_shows_whole_in_attach(tmp_path: Path) -> None:
    term = Term(tmp_path, "shell", "--model", "fake")
    talk(term)
    term.sendline("exit -f")
    assert term.finish() == 0
    assert ANSWER in term.screen()


def test_a_streamed_answer_shows_whole_in_run(tmp_path: Path) -> None:
    term = Term(tmp_path, "shell", "--model", "fake")
    term.expect(PROMPT)
    term.sendline(f"run {APPS}:dribble")
    term.sendline("hello")
    term.expect(r"the end of hello\.")
    term.sendcontrol("d")
    term.expect(r"\[1\] exited: 1")
    term.expect(PROMPT)
    term.sendline("exit")
    assert term.finish() == 0
    assert ANSWER in term.screen()


def test_a_streamed_answer_shows_whole_in_a_shell_connected_to_a_daemon(tmp_path: Path) -> None:
    env = daemon_env(tmp_path)
    daemon, url = start_daemon(env)
    try:
        term = Term(tmp_path, "shell", "--connect", url, env=env)
        talk(term)
        term.sendline("kill 1")
        term.expect(r"\[1\] dribble killed")
        term.expect(PROMPT)
        term.sendline("exit")
        assert term.finish() == 0
    finally:
        stop_daemon(daemon)
    assert ANSWER in term.screen()
    assert term.screen().count("killed") == 1  # `kill` says it; the notice stays quiet


# -- `llmasos run` in a terminal (finding 2) ------------------------------------------------------------


def real_model_home(home: Path) -> Path:
    """home, with the converted default model linked in when this machine has it (else ~30 s to convert)."""
    homes = [Path(os.environ["LLMASOS_HOME"])] if os.environ.get("LLMASOS_HOME") else []
    for cache in [h / "models" for h in [*homes, Path.home() / ".llmasos"]]:
        if (cache / "smollm2-135m").is_dir():
            (home / "models").symlink_to(cache)
            break
    return home


async def live_after_a_restart(home: Path) -> list[int]:
    """The pids a new kernel on home resumes."""
    from llmasos.engine.fake import FakeEngine
    from llmasos.kernel import Kernel, KernelConfig

    async with Kernel(KernelConfig(engine=FakeEngine(), home=home)) as kernel:
        return [p.pid for p in kernel.ps()]


def test_run_chat_in_a_terminal_answers_each_line_and_ends_on_ctrl_d(tmp_path: Path) -> None:
    term = Term(tmp_path, "run", "chat", "--model", "fake")
    term.sendline("What is the capital of France?")
    term.expect(r"user: What is the capital of France\?")
    term.sendline("And of Spain?")
    term.expect(r"user: And of Spain\?")
    term.sendcontrol("d")
    term.expect(r"\[exit\] 2")
    assert term.finish() == 0


async def test_run_in_a_terminal_ctrl_c_kills_the_process_with_one_line(tmp_path: Path) -> None:
    term = Term(tmp_path, "run", str(APPS) + ":dribble", "--model", "fake", "--every=0.2")
    term.sendline("hello")
    term.expect(r"w2 ")
    term.sendcontrol("c")
    term.expect(r"\[killed\] by Ctrl-C")
    assert term.finish() == 130
    assert "Traceback" not in term.screen()
    assert await live_after_a_restart(tmp_path) == []  # killed, not resumed


@pytest.mark.slow
def test_run_chat_in_a_terminal_on_the_real_default_model(tmp_path: Path) -> None:
    term = Term(real_model_home(tmp_path), "run", "chat", "--max-tokens=24", timeout=180)
    term.sendline("What is the capital of France?")
    term.expect(r"Paris")
    term.expect(r"\n")  # the end of the answer
    term.sendcontrol("d")
    term.expect(r"\[exit\] 1")
    assert term.finish() == 0


# -- exit -f (finding 5) -----------------------------------------------------------------------------------


async def test_exit_f_kills_running_processes_so_they_are_not_resumed(tmp_path: Path) -> None:
    sleeper = Path(__file__).parent.parent / "apps_for_tests.py"
    term = Term(tmp_path, "shell", "--model", "fake")
    spawn_one(term, f"{sleeper}:sleeper 600", "sleeper")
    term.sendline("exit -f")
    term.expect(r"killing 1")
    assert term.finish() == 0
    assert await live_after_a_restart(tmp_path) == []


# -- a long paste into attach (finding 4) -------------------------------------------------------------------


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the shell's memory from /proc")
def test_a_long_unbracketed_paste_into_attach_costs_linear_time_and_little_memory(tmp_path: Path) -> None:
    """A terminal that does not bracket a paste sends it as keys; each one copied the whole line (twice)."""
    lines = Path(__file__).parent.parent / "apps_for_tests.py"
    term = Term(tmp_path, "shell", "--model", "fake")
    spawn_one(term, f"{lines}:lines", "lines")
    term.sendline("attach 1")
    term.expect(r"Ctrl-\] detaches")
    before = rss_mb(term.child.pid)
    text = ("lorem ipsum dolor sit amet " * 1000)[:24_000] + " zzend"
    start = time.monotonic()
    for i in range(0, len(text), 1024):  # as a terminal delivers it: a read at a time
        term.child.send(text[i:i + 1024])
    term.sendline("")
    term.expect(r"ZZEND", timeout=60)
    took, grew = time.monotonic() - start, rss_mb(term.child.pid) - before
    term.sendcontrol("]")
    term.expect(PROMPT)
    term.sendline("exit -f")
    assert term.finish() == 0
    assert grew < 100, f"the shell grew by {grew} MB for a 24 KB paste"  # was 290 MB (quadratic)
    assert took < 20


def test_clear_in_a_terminal_leaves_only_the_prompt(tmp_path: Path) -> None:
    term = Term(tmp_path, "shell", "--model", "fake")
    term.expect(PROMPT)
    term.sendline("help")
    term.expect(PROMPT)
    term.sendline("clear")
    term.expect(r"\x1b\[2J")
    term.expect(PROMPT)
    term.sendline("exit")
    assert term.finish() == 0
    assert term.screen().strip().splitlines()[0] == "llmasos> exit"


@pytest.mark.slow
def test_attach_on_the_real_default_model_shows_the_whole_answer(tmp_path: Path) -> None:
    term = Term(real_model_home(tmp_path), "shell", timeout=180)
    spawn_one(term, "chat --max-tokens=40", "chat")
    term.sendline("attach 1")
    term.expect(r"Ctrl-\] detaches")
    term.sendline("What is the capital of France?")
    term.expect(r"Paris[^\x1b\r\n]*\r?\n", timeout=120)  # the line that says it, to its end
    term.sendcontrol("]")
    term.expect(r"detached from \[1\]")
    term.expect(PROMPT)
    term.sendline("logs 1")
    # "llmasos>" alone also matches the redraw of the line just typed; wait for what logs prints, or the
    # next line typed is echoed by the terminal above it
    term.expect(r"Paris[^\x1b\r\n]*\r?\n")
    term.expect(PROMPT)
    term.sendline("exit -f")
    assert term.finish() == 0
    screen = term.screen()
    logged = screen.split("llmasos> logs 1\n", 1)[1].strip().splitlines()[0]
    assert "Paris" in logged
    assert screen.count(logged) == 2, screen  # attach showed the whole line, as logs has it
