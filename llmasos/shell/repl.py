"""The REPL: a prompt_toolkit session that reads command lines and runs them against a KernelClient.

Rule: one anyio (asyncio) event loop runs the prompt, the commands and the background notices. Anything
printed while the prompt is up goes through ``patch_stdout`` so it appears above the line being typed
and never corrupts it. A command never takes the shell down: its errors print as one line.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import traceback
from functools import partial
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app_or_none, run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmasos.client import KernelClient, NotAvailable, tables
from llmasos.client.tables import ended_line
from llmasos.errors import LlmasosError
from llmasos.home import private_dir, private_file
from llmasos.shell.commands import ALIASES, COMMANDS, ExitShell, UsageError, dispatch_words, lookup, register_all

PROMPT = "llmasos> "
MAX_PARTIAL = 4000  # characters of an unfinished output line held for the prompt; then it is broken


@dataclass(slots=True)
class Cache:
    """What completion offers; refreshed before each prompt (completion itself must not wait)."""

    apps: list[str] = field(default_factory=list)
    pids: dict[int, str] = field(default_factory=dict)  # pid -> "app state"
    tools: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)


class ShellCompleter(Completer):
    """Completes command names, then each command's arguments: apps, pids, policies, tools, options."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def get_completions(self, document: Document, event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        current = words.pop() if words and not text[-1].isspace() else ""
        cache = self.shell.cache
        meta: dict[str, str] = {}
        if not words:
            options = [*COMMANDS, *ALIASES]
            meta = {name: c.summary for name, c in COMMANDS.items()}
        else:
            try:
                cmd = lookup(words[0])
            except LlmasosError:
                return
            kind, nth = cmd.complete, len(words)
            if words[-1] == "--caps" or current.startswith(("tools=", "memory=")):
                head, _, last = current.rpartition(",")
                if current.startswith("tools="):
                    prefix = head + "," if head else "tools="
                    last = last.removeprefix("tools=")
                    yield from _matches([prefix + t for t in cache.tools], prefix + last, {})
                else:
                    yield from _matches(["tools=", "memory=", "can_spawn=no", "token_budget=",
                                         "syscall_budget=", "max_children="], current, {})
                return
            if current.startswith("-"):
                options = list(cmd.flags)
            elif kind == "pid":
                options = [str(p) for p in sorted(cache.pids, reverse=True)]
                meta = {str(p): d for p, d in cache.pids.items()}
            elif kind == "app" and nth == 1:
                options = cache.apps
            elif kind == "policy" and nth == 1:
                options = cache.policies
            elif kind == "command" and nth == 1:
                options = list(COMMANDS)
            else:
                return
        yield from _matches(options, current, meta)


def _matches(options: Iterable[str], current: str, meta: dict[str, str]) -> Iterable[Completion]:
    for option in options:
        if option.startswith(current):
            yield Completion(option, start_position=-len(current), display_meta=meta.get(option, ""))


class Shell:
    """A REPL over a KernelClient.

    Tests pass ``input`` (prompt_toolkit's pipe input), ``output`` (DummyOutput) and ``stdout`` (a
    StringIO that receives everything the shell prints); by default it uses the real terminal.
    """

    def __init__(self, client: KernelClient, *, input: Input | None = None, output: Output | None = None,
                 stdout: IO[str] | None = None, history: History | Path | None = None,
                 color: bool | None = None, width: int | None = None, banner: str | None = None) -> None:
        register_all()
        self.client = client
        self.input, self.output, self.stdout = input, output, stdout
        if color is None:
            color = stdout is None and sys.stdout.isatty()
        self.color = color
        self._tty = sys.stdout  # the real terminal, saved before patch_stdout replaces sys.stdout
        self.console = Console(file=_Sink(self), force_terminal=color, no_color=not color, width=width,
                               highlight=False, soft_wrap=False)
        if history is None:
            history = InMemoryHistory()
        elif isinstance(history, Path):
            private_dir(history.parent)
            history = FileHistory(str(private_file(history)))  # (0600: what the user typed is theirs)
        self.session: PromptSession[str] = PromptSession(
            history=history, completer=ShellCompleter(self), complete_while_typing=False,
            input=input, output=output, enable_history_search=False,
        )
        self.banner = banner
        self.cache = Cache()
        self.quiet: set[int] = set()  # pids whose end a command reports itself (no notice)
        self.watched: set[int] = set()  # pids whose end will be announced by a notice
        self.at_prompt = False  # the prompt is up (not a command): what tests wait for before typing
        self._tg: anyio.abc.TaskGroup | None = None
        self._held = ""  # process output not written yet: its unfinished last line (see out)

    # -- printing ---------------------------------------------------------------------------------------

    def print(self, *items: Any) -> None:
        self.console.print(*items)

    def note(self, message: str) -> None:
        self.console.print(Text(message, style="dim"))

    def error(self, message: str) -> None:
        self.console.print(Text(message, style="red"))

    def out(self, text: str) -> None:
        """Raw text (process output), shown at once, above whatever prompt is up, in call order.

        Invariant: whenever a prompt is drawn, the terminal's cursor is at the start of a line. Only whole
        lines are written to the terminal; an unfinished last line (a streamed answer) is held, shown by the
        prompt that is up (``partial_line``) until its newline comes, and written by ``end_line`` when the
        view ends. (prompt_toolkit draws from the cursor but redraws from column 0 once the terminal reports
        the rows below it, as tmux and xterm do: a partial line written above a prompt was erased by the
        next chunk, so only an answer's last fragment stayed on the screen.)
        """
        if not text or self._captured(text):
            return
        self._held += text
        if len(self._held) - (self._held.rfind("\n") + 1) > MAX_PARTIAL:  # a line that never ends
            self._held += "\n"
        app = get_app_or_none()
        if app is None or not app.is_running:  # a command is running: write now, before the next prompt
            self._write_lines()
        elif "\n" in self._held:  # erase the prompt, write, redraw it (in order: one buffer)
            run_in_terminal(self._write_lines, in_executor=False)
        else:
            app.invalidate()  # the prompt shows the unfinished line

    def say(self, text: str) -> None:
        """The shell's own whole lines (rich output): above the prompt, never inside a process's line."""
        if not text or self._captured(text):
            return
        app = get_app_or_none()
        if app is not None and app.is_running:
            run_in_terminal(partial(self._write_tty, text), in_executor=False)
        else:
            self._write_tty(text)

    def _captured(self, text: str) -> bool:
        """Tests give a StringIO: all output goes there as it comes."""
        if self.stdout is None:
            return False
        self.stdout.write(text)
        self.stdout.flush()
        return True

    def partial_line(self) -> str:
        """The unfinished last line of process output, which the prompt that is up shows."""
        return self._held

    def end_line(self) -> None:
        """Write the unfinished line of process output, if any, and end it."""
        if self._held:
            self._held += "\n"
            self._write_lines()

    def clear(self) -> None:
        """Clear the screen and put the cursor at the top."""
        self.end_line()
        if self.stdout is not None:
            self.stdout.write("\x1b[H\x1b[2J")
        else:
            self._write_tty("\x1b[H\x1b[2J")

    def _write_lines(self) -> None:
        lines, nl, self._held = self._held.rpartition("\n")
        if nl:
            self._write_tty(lines + nl)

    def _write_tty(self, text: str) -> None:
        self._tty.write(text)  # the terminal is in cooked mode here (no app, or inside run_in_terminal)
        self._tty.flush()

    def style_stderr(self, text: str) -> str:
        return f"\x1b[31m{text}\x1b[0m" if self.color and text else text

    def table(self, *columns: str, title: str | None = None) -> Table:
        return tables.table(*columns, title=title, color=self.color)

    # -- jobs ----------------------------------------------------------------------------------------

    def watch(self, pid: int) -> None:
        """Print a notice when pid ends (unless a command reports it itself)."""
        if self._tg is not None and pid not in self.watched:
            self.watched.add(pid)
            self._tg.start_soon(self._notify, pid)

    async def _notify(self, pid: int) -> None:
        try:
            info = await self.client.ended(pid)
        except LlmasosError:
            return
        finally:
            self.watched.discard(pid)
        if pid in self.quiet:
            self.quiet.discard(pid)
            return
        style = {"exited": "green", "killed": "yellow"}.get(info.state, "red")
        self.print(Text(ended_line(pid, info.state, info.exit_value, info.error), style=style))

    async def may_exit(self, force: bool = False) -> bool:
        if self.client.remote:
            self.note(f"detached from {self.client.where}; its processes keep running")
            return True
        live = await self.client.ps()
        if not live:
            return True
        pids = " ".join(str(p.pid) for p in live)
        n = len(live)
        if not force:
            self.print(Text(f"{n} process{'es' if n > 1 else ''} still running ({pids}); "
                            f"exiting kills {'them' if n > 1 else 'it'}.", style="yellow"))
            if not await self.confirm("Exit? [y/N] "):
                self.note("not exiting")
                return False
        else:
            self.note(f"killing {pids}")
        for p in live:  # killed, not left running: a durable kernel would resume them at the next boot
            self.quiet.add(p.pid)
            try:
                await self.client.kill(p.pid)
            except LlmasosError:
                pass
        return True

    async def confirm(self, question: str) -> bool:
        ask: PromptSession[str] = PromptSession(input=self.input, output=self.output)
        try:
            answer = await ask.prompt_async(question)
        except KeyboardInterrupt:
            return False
        except EOFError:  # Ctrl-D again, or the end of piped input: that is a yes
            return True
        return answer.strip().lower() in ("y", "yes")

    async def refresh(self) -> None:
        """Refresh what completion offers."""
        try:
            self.cache.pids = {p.pid: f"{p.app} {p.state}" for p in await self.client.ps(all=True)}
            if not self.cache.apps:
                self.cache.apps = [a.name for a in await self.client.apps()]
                self.cache.policies = await self.client.policies()
                try:
                    self.cache.tools = [t.name for t in await self.client.tools()]
                except NotAvailable:
                    pass
        except LlmasosError:
            pass

    # -- the loop ----------------------------------------------------------------------------------------

    async def execute(self, line: str) -> bool:
        """Run one command line; False when the shell should exit."""
        try:
            parsed = dispatch_words(line)
            if parsed is None:
                return True
            cmd, args = parsed
            try:
                with anyio.CancelScope() as scope, self._sigint_cancels(scope):
                    await cmd.handler(self, args)
            finally:
                self.end_line()
            if scope.cancelled_caught:
                self.note("interrupted")
        except ExitShell:
            return False
        except (UsageError, LlmasosError) as exc:
            self.error(str(exc))
        except Exception as exc:  # a shell bug must not end the session
            leaves = _leaves(exc)
            if all(isinstance(e, LlmasosError) for e in leaves):  # from inside a task group
                for e in leaves:
                    self.error(str(e))
            else:
                self.error(f"internal error: {type(exc).__name__}: {exc} (please report it)")
                self.note("".join(traceback.format_exception(exc)[-3:]).rstrip())
        return True

    def _sigint_cancels(self, scope: anyio.CancelScope) -> Any:
        """While a command runs in a real terminal, Ctrl-C (SIGINT) interrupts it, not the shell."""
        return _SigintScope(scope) if self.input is None and _main_thread_loop() else _Nothing()

    async def run(self) -> None:
        """Read and run commands until exit or Ctrl-D."""
        real = self.stdout is None
        with (patch_stdout(raw=True) if real else _Nothing()), (_IgnoreSigint() if self.input is None else _Nothing()):
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.banner:
                    self.print(Text.from_markup(self.banner))
                await self._adopt()
                try:
                    await self._loop()
                finally:
                    tg.cancel_scope.cancel()

    async def _adopt(self) -> None:
        """Watch the processes already running (resumed after a restart, or a daemon's)."""
        try:
            live = await self.client.ps()
        except LlmasosError:
            return
        if not live:
            return
        if not self.client.remote:
            for p in live:
                self.watch(p.pid)
        names = ", ".join(f"[{p.pid}] {p.app}" for p in live[:8]) + (" …" if len(live) > 8 else "")
        verb = "running" if self.client.remote else "resumed from the last session"
        self.note(f"{len(live)} process{'es' if len(live) > 1 else ''} {verb}: {names} (ps shows them)")

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            self.at_prompt = True
            try:
                line = await self.session.prompt_async(PROMPT)
            except KeyboardInterrupt:  # Ctrl-C clears the line; it never exits
                continue
            except EOFError:  # Ctrl-D
                self.at_prompt = False
                if self.input is not None and self.input.closed:
                    return
                if await self.may_exit():
                    return
                continue
            finally:
                self.at_prompt = False
            if not await self.execute(line):
                return


class _Sink:
    """The file rich writes to: text goes to Shell.out on each flush."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        text, self.parts = "".join(self.parts), []
        self.shell.say(text)

    def isatty(self) -> bool:
        return self.shell.color


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _main_thread_loop() -> asyncio.AbstractEventLoop | None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _SigintScope:
    """Route SIGINT to a cancel scope (prompt_toolkit apps inside it handle Ctrl-C as a key)."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.loop = _main_thread_loop()

    def __enter__(self) -> None:
        if self.loop is not None:
            self.loop.add_signal_handler(signal.SIGINT, self.scope.cancel)

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None:
            self.loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # between commands the prompt reads Ctrl-C as a key


class _IgnoreSigint:
    """For the shell's life: a stray SIGINT outside a command neither kills nor cancels the shell."""

    def __enter__(self) -> None:
        self.old = signal.getsignal(signal.SIGINT) if _main_thread_loop() else None
        if self.old is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
