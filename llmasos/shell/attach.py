"""Commands that hold the terminal: run, attach, logs -f, strace.

Rule: the terminal stays responsive whatever a process does. Process output reaches the screen through
``pump``, which batches it every few tens of milliseconds and, when a process writes faster than a
terminal can show, drops the overflow with a note (the kernel's log keeps the latest lines). Every view
ends on a key the banner names, or by itself when the process ends.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anyio
from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application, get_app, get_app_or_none
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import ANSI, FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from rich.text import Text

from llmasos.client.tables import ended_line
from llmasos.errors import LlmasosError
from llmasos.shell.commands import command, parse_number, parse_pid, parse_spawn, take_options, usage_error

if TYPE_CHECKING:
    from llmasos.shell.repl import Shell

LIVE_STATES = ("ready", "running", "waiting")
TICK = 0.05  # seconds between screen updates of streamed output
MAX_PENDING = 64 * 1024  # characters of output held for one update; older ones are dropped
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but \t and \n: a process cannot drive the terminal


def clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


# -- streaming output ---------------------------------------------------------------------------------


async def pump(sh: Shell, pid: int, *, history: bool) -> None:
    """Copy pid's output to the terminal until it ends, in bounded batches."""

    async def chunks() -> AsyncIterator[str]:
        again = history
        try:
            while True:
                async with aclosing(sh.client.follow(pid, history=again)) as stream_:
                    async for stream, text in stream_:
                        text = clean(text)
                        yield sh.style_stderr(text) if stream == "stderr" else text
                again = False
                info = await sh.client.info(pid)
                if info.state not in LIVE_STATES:
                    return
                # The kernel dropped us as a follower: we fell behind a flood. Pick up from now.
                yield f"\n[output too fast to show; some skipped — logs {pid} keeps the latest]\n"
        except LlmasosError:  # reaped meanwhile
            return

    await batched(sh, chunks(), f"logs {pid} keeps the latest")


async def batched(sh: Shell, chunks: AsyncIterator[str], where: str) -> None:
    """Write chunks to the terminal every TICK seconds, dropping the oldest beyond MAX_PENDING."""
    pending: deque[str] = deque()
    size = skipped = 0
    done = anyio.Event()

    async def read() -> None:
        nonlocal size, skipped
        try:
            async with aclosing(chunks):  # type: ignore[type-var]
                async for text in chunks:
                    pending.append(text)
                    size += len(text)
                    while size > MAX_PENDING and len(pending) > 1:
                        dropped = pending.popleft()
                        size -= len(dropped)
                        skipped += len(dropped)
        finally:
            done.set()

    def flush() -> None:
        nonlocal size, skipped
        if skipped:
            sh.out(f"\n[… {skipped} characters not shown; {where}]\n")
            skipped = 0
        if pending:
            text = "".join(pending)
            pending.clear()
            size = 0
            sh.out(text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        try:
            while not done.is_set():
                with anyio.move_on_after(TICK):
                    await done.wait()
                flush()
        finally:
            flush()


async def pump_lines(sh: Shell, lines: AsyncIterator[str]) -> None:
    """Copy a stream of lines (strace) to the terminal, bounded like pump."""

    async def chunks() -> AsyncIterator[str]:
        async with aclosing(lines):  # type: ignore[type-var]
            async for line in lines:
                yield clean(line) + "\n"

    await batched(sh, chunks(), "the kernel keeps each process's recent syscalls")


def partial(sh: Shell) -> Any:
    """What a prompt shows of the output line a process has begun but not ended (nothing once done)."""
    app = get_app_or_none()
    if app is not None and app.is_done:  # the rendering left on the screen: the line is written later
        return ""
    return ANSI(sh.partial_line().replace("\t", "    "))


def _exit_app(app: Any, result: Any) -> None:
    if app.is_running and app.future is not None and not app.future.done():
        app.exit(result=result)


async def hold(sh: Shell, message: str, ended: anyio.Event, keys: dict[str, str]) -> str:
    """Show a one-line status and wait for one of keys (-> its result) or for ended (-> "ended")."""
    kb = KeyBindings()
    for key, result in keys.items():
        kb.add(key, eager=True)(lambda event, r=result: event.app.exit(result=r))
    line = Window(FormattedTextControl(lambda: partial(sh)), dont_extend_height=True)
    status = Window(FormattedTextControl(FormattedText([("reverse", message)])), height=1)
    app: Application[str] = Application(
        layout=Layout(HSplit([ConditionalContainer(line, Condition(lambda: bool(sh.partial_line()))), status])),
        key_bindings=kb, input=sh.input, output=sh.output, erase_when_done=True,
    )

    async def watch() -> None:
        await ended.wait()
        _exit_app(app, "ended")

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await app.run_async(pre_run=lambda: ended.is_set() and _exit_app(app, "ended"),
                                     handle_sigint=False)
        tg.cancel_scope.cancel()
    return result


# -- attach and run ------------------------------------------------------------------------------------


class _Key:
    """What a key did to the attach prompt (never confused with a typed line, which is a str)."""

    def __init__(self, name: str) -> None:
        self.name = name


DETACH, KILL, EOF, ENDED = _Key("detach"), _Key("kill"), _Key("eof"), _Key("ended")


async def session(sh: Shell, pid: int, *, foreground: bool) -> str:
    """The terminal becomes pid's stdin and stdout. Returns "ended", "detached" or "killed"."""

    def on(key: str, result: _Key, **kw: Any) -> None:
        # eager: Emacs mode binds Ctrl-] as a prefix (character search), which would delay it
        kb.add(key, eager=True, **kw)(lambda e: e.app.exit(result=result))

    kb = KeyBindings()
    on("c-]", DETACH)
    on("c-c", KILL if foreground else DETACH)
    on("c-d", EOF if foreground else DETACH, filter=_empty())
    prompt: PromptSession[Any] = PromptSession(
        input=sh.input, output=sh.output, history=InMemoryHistory(), key_bindings=kb,
    )
    coalesce_typing(prompt.app)
    ended = anyio.Event()

    def stop_prompt() -> None:
        if ended.is_set():
            _exit_app(prompt.app, ENDED)

    async def output() -> None:
        await pump(sh, pid, history=True)  # run: all it wrote so far; attach: its recent lines
        ended.set()
        stop_prompt()

    outcome = "ended"
    async with anyio.create_task_group() as tg:
        tg.start_soon(output)
        while not ended.is_set():
            got = await prompt.prompt_async(lambda: partial(sh), pre_run=stop_prompt, handle_sigint=False)
            if got is ENDED:
                break
            if got is DETACH:
                outcome = "detached"
                break
            if got is KILL:
                await sh.client.kill(pid)
                outcome = "killed"
                break
            if got is EOF:
                await sh.client.close_stdin(pid)
                choice = await hold(sh, f"[{pid}] input closed; waiting for it to end — Ctrl-C kills, "
                                        "Ctrl-] backgrounds", ended, {"c-c": "kill", "c-]": "detach"})
                outcome = {"kill": "killed", "detach": "detached"}.get(choice, "ended")
                if choice == "kill":
                    await sh.client.kill(pid)
                break
            try:
                await sh.client.write_stdin(pid, got + "\n")
            except LlmasosError:  # it ended between the line and now
                break
        if outcome != "killed":  # a killed process's output ends by itself
            tg.cancel_scope.cancel()
    sh.end_line()
    return outcome


def coalesce_typing(app: Any) -> None:
    """Feed each run of plain characters that arrives at once (a paste the terminal did not bracket) as one
    paste: one insert, not one per character.

    Inserted one at a time, each character copies the whole line and saves a copy for undo: a 24 KB paste
    took 5 s and 300 MB, a 122 KB one 45 s and 9 GB. A character typed alone stays a key press.
    """
    processor = app.key_processor
    feed = processor.feed_multiple

    def feed_multiple(keys: list[KeyPress], first: bool = False) -> None:
        merged: list[KeyPress] = []
        run: list[str] = []

        def end_run() -> None:
            if len(run) > 1:
                merged.append(KeyPress(Keys.BracketedPaste, "".join(run)))
            else:
                merged.extend(KeyPress(c, c) for c in run)
            run.clear()

        for key in keys:
            if isinstance(key.key, str) and key.key == key.data and len(key.data) == 1 and key.data.isprintable():
                run.append(key.data)
            else:
                end_run()
                merged.append(key)
        end_run()
        feed(merged, first=first)

    processor.feed_multiple = feed_multiple


def _empty() -> Condition:
    """A filter: the input line is empty (so Ctrl-D means end or detach, not delete-char)."""
    return Condition(lambda: not get_app().current_buffer.text)


async def _require_live(sh: Shell, cmd: str, pid: int) -> Any:
    info = await sh.client.info(pid)
    if info.state not in LIVE_STATES:
        raise LlmasosError(f"{cmd}: process {pid} ({info.app}) has {info.state}; logs {pid} shows its output")
    return info


@command("attach PID", complete="pid")
async def attach(sh: Shell, args: list[str]) -> None:
    """Talk to a running process: your lines go to its stdin, its output shows here.

    Ctrl-] (or Ctrl-D on an empty line, or Ctrl-C) detaches; the process keeps running. The last lines
    it wrote are shown first. Example: spawn chat, attach 1, type a question, read the answer, Ctrl-].
    """
    if len(args) != 1:
        raise usage_error("attach", "give one pid")
    pid = parse_pid("attach", args[0])
    info = await _require_live(sh, "attach", pid)
    sh.print(Text(f"attached to [{pid}] {info.app}: type a line to send it; Ctrl-] detaches", style="bold"))
    sh.quiet.add(pid)
    outcome = await session(sh, pid, foreground=False)
    if outcome == "detached":
        sh.quiet.discard(pid)
        sh.print(Text(f"detached from [{pid}]; it keeps running (attach {pid}, kill {pid})", style="dim"))
        return
    info = await sh.client.info(pid)
    sh.print(Text(ended_line(pid, info.state, info.exit_value, info.error)))


@command("run APP [ARGS...] [--prio N] [--caps K=V...]", complete="app", flags=("--prio", "--caps"))
async def run(sh: Shell, args: list[str]) -> None:
    """Start APP in the foreground and wait for it (Ctrl-C kills it).

    The terminal is its stdin and stdout until it ends.
    Ctrl-C kills it; Ctrl-D on an empty line ends its input; Ctrl-] moves it to the background.
    Arguments as for spawn. Prints how it ended and reaps it.
    """
    app, pos, kwargs, prio, caps = parse_spawn("run", args)
    pid = await sh.client.spawn(app, pos, kwargs, priority=prio, caps=caps)
    sh.quiet.add(pid)
    outcome = await session(sh, pid, foreground=True)
    if outcome == "detached":
        sh.quiet.discard(pid)
        sh.watch(pid)
        sh.print(Text(f"[{pid}] moved to the background", style="dim"))
        return
    status = await sh.client.wait(pid, 5.0)
    sh.print(Text(ended_line(status.pid, status.state, status.value, status.error),
                  style="yellow" if status.state != "exited" else ""))


# -- logs and strace ---------------------------------------------------------------------------------


@command("logs PID [-f] [-n LINES]", complete="pid", flags=("-f", "-n"))
async def logs(sh: Shell, args: list[str]) -> None:
    """Print what a process wrote to stdout and stderr (-f: follow it).

    stderr shows in red. The kernel keeps each process's latest lines (KernelConfig.stdout_lines).
    -n LINES shows only the last lines. -f follows: new output appears as it is written until the
    process ends or you press q, Escape or Ctrl-C.
    """
    opts, rest = take_options("logs", args, {"-f": False, "-n": True})
    if len(rest) != 1:
        raise usage_error("logs", "give one pid")
    pid = parse_pid("logs", rest[0])
    text = "".join(sh.style_stderr(clean(t)) if s == "stderr" else clean(t) for s, t in await sh.client.output(pid))
    if "-n" in opts:
        n = parse_number("logs", "-n", opts["-n"])
        text = "\n".join(text.rstrip("\n").split("\n")[-n:]) + ("\n" if text else "")
    if text:
        sh.out(text if text.endswith("\n") or "-f" in opts else text + "\n")
    elif "-f" not in opts:
        sh.note(f"process {pid} has written nothing")
    if "-f" not in opts:
        return
    info = await sh.client.info(pid)
    if info.state not in LIVE_STATES:
        sh.note(f"[{pid}] has {info.state}; nothing more will come")
        return
    await _view(sh, pid, pump(sh, pid, history=False), f"following [{pid}] — q, Escape or Ctrl-C stops")


_STOP_KEYS = {"q": "stop", "escape": "stop", "c-c": "stop", "c-d": "stop", "enter": "stop", "c-j": "stop"}


@command("strace [PID]", complete="pid")
async def strace(sh: Shell, args: list[str]) -> None:
    """Stream a process's syscalls live, with arguments, results and durations.

    Without a pid, every process's. Runs until the process ends or you press q, Escape or Ctrl-C.
    Lines look like: [3] generate(prompt='hi', max_tokens=20) = Completion(...) <0.1203s>
    """
    if len(args) > 1:
        raise usage_error("strace", "give at most one pid")
    pid = parse_pid("strace", args[0]) if args else None
    if pid is not None:
        await _require_live(sh, "strace", pid)
    label = f"[{pid}]" if pid is not None else "every process"
    await _view(sh, pid, pump_lines(sh, sh.client.strace(pid)), f"strace {label} — q, Escape or Ctrl-C stops")


async def _view(sh: Shell, pid: int | None, feed: Awaitable[None], message: str) -> None:
    """Run feed (it shows pid's lines) under a status line until it ends or a stop key; then say how pid
    ended, below its last lines (its notice, which could come before them, is held back)."""
    ended = anyio.Event()

    async def show() -> None:
        await feed
        ended.set()

    if pid is not None:
        sh.quiet.add(pid)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(show)
            await hold(sh, message, ended, _STOP_KEYS)
            tg.cancel_scope.cancel()
    finally:
        sh.end_line()
        if pid is not None:
            await _say_end(sh, pid)


async def _say_end(sh: Shell, pid: int) -> None:
    """After a view of pid that held back its notice: say how it ended, or let the notice say it later."""
    try:
        info = await sh.client.info(pid)
    except LlmasosError:  # reaped meanwhile
        sh.quiet.discard(pid)
        return
    if info.state in LIVE_STATES or pid not in sh.watched:  # (a watched one's pending notice stays quiet)
        sh.quiet.discard(pid)
    if info.state not in LIVE_STATES:
        sh.note(ended_line(pid, info.state, info.exit_value, info.error))
