"""The shell's command table: name -> handler, usage and help; parsing with clear errors.

Rule: a handler gets the shell and its argument words, parses them with the helpers here (which raise
``UsageError`` naming the usage line), and talks to the kernel only through ``sh.client``. Commands that
take over the terminal (run, attach, logs -f, strace, top) live in ``attach.py`` and ``top.py``.
"""

from __future__ import annotations

import difflib
import inspect
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmasos.errors import LlmasosError

if TYPE_CHECKING:
    from llmasos.shell.repl import Shell

Handler = Callable[["Shell", list[str]], Awaitable[None]]


class UsageError(LlmasosError):
    """A command was given arguments it does not take."""


class UnknownCommand(LlmasosError):
    """No command by that name."""


class ExitShell(Exception):
    """Raised by `exit` (and Ctrl-D) once the user confirmed."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    usage: str  # "kill PID..."
    summary: str  # one line for `help`
    help: str  # the rest, for `help NAME`
    complete: str | None  # what its arguments are: "app", "pid", "policy", "command", "tool"
    flags: tuple[str, ...]  # options, for completion


COMMANDS: dict[str, Command] = {}
ALIASES: dict[str, str] = {"quit": "exit", "?": "help"}


def command(usage: str, *, complete: str | None = None, flags: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Register a handler; its docstring's first line is the summary, the rest the help."""

    def register(fn: Handler) -> Handler:
        name = usage.split()[0]
        doc = inspect.cleandoc(fn.__doc__ or "")
        first, _, body = doc.partition("\n\n")
        summary = " ".join(first.split())
        COMMANDS[name] = Command(name, fn, usage, summary, body, complete, flags)
        return fn

    return register


def lookup(name: str) -> Command:
    """The command called name (or an alias); UnknownCommand suggests the closest."""
    name = ALIASES.get(name, name)
    if name in COMMANDS:
        return COMMANDS[name]
    close = difflib.get_close_matches(name, [*COMMANDS, *ALIASES], n=1, cutoff=0.5)
    hint = f"; did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise UnknownCommand(f"unknown command {name!r}{hint} (type help for the list)")


def split(line: str) -> list[str]:
    """The words of a command line, shell-quoted; `#` starts a comment."""
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:  # no closing quotation
        raise UsageError(f"cannot parse that line: {exc}") from None


# -- argument helpers ------------------------------------------------------------------------------


def usage_error(cmd: str, problem: str) -> UsageError:
    return UsageError(f"{cmd}: {problem}\nusage: {COMMANDS[cmd].usage}")


def parse_pid(cmd: str, word: str) -> int:
    text = word.lstrip("%")
    if not text.isdigit() or int(text) < 1:
        raise usage_error(cmd, f"{word!r} is not a pid (a positive number; see ps)")
    return int(text)


def parse_number(cmd: str, flag: str, word: str | None, kind: type = int) -> Any:
    if word is None:
        raise usage_error(cmd, f"{flag} needs a value")
    try:
        return kind(word)
    except ValueError:
        raise usage_error(cmd, f"{flag} takes a number, not {word!r}") from None


def take_options(cmd: str, args: list[str], flags: dict[str, bool]) -> tuple[dict[str, Any], list[str]]:
    """Pull options out of args. flags maps '-f' to whether it takes a value. Returns (opts, rest)."""
    opts: dict[str, Any] = {}
    rest: list[str] = []
    words = iter(args)
    for word in words:
        name, eq, value = word.partition("=")
        if name in flags:
            if flags[name]:
                opts[name] = value if eq else next(words, None)
                if opts[name] is None:
                    raise usage_error(cmd, f"{name} needs a value")
            elif eq:
                raise usage_error(cmd, f"{name} takes no value")
            else:
                opts[name] = True
        elif word.startswith("-") and len(word) > 1 and not word[1:].isdigit():
            known = ", ".join(flags) or "none"
            raise usage_error(cmd, f"unknown option {word!r} (options: {known})")
        else:
            rest.append(word)
    return opts, rest


def parse_spawn(cmd: str, args: list[str]) -> tuple[str, list[str], dict[str, str], int | None, dict[str, Any] | None]:
    """`APP [ARGS...] [--prio N] [--caps K=V...] [--key=value...]` -> (app, args, kwargs, prio, caps).

    --prio and --caps belong to the shell wherever they are; other --key=value words after the app are
    keyword arguments of its main; after `--` every word goes to the app as is.
    """
    app: str | None = None
    pos: list[str] = []
    kwargs: dict[str, str] = {}
    prio: int | None = None
    caps: dict[str, Any] = {}
    words = iter(args)
    for word in words:
        if word == "--":
            pos.extend(words)
            break
        name, eq, value = word.partition("=")
        if name in ("--prio", "-p"):
            prio = parse_number(cmd, name, value if eq else next(words, None))
        elif name == "--caps":
            spec = word[len("--caps="):] if eq else next(words, None)
            if spec is None:
                raise usage_error(cmd, "--caps needs a value such as tools=calculator,search")
            caps.update(parse_caps(cmd, spec))
        elif app is None and word.startswith("-"):
            raise usage_error(cmd, f"unknown option {word!r}; the app name comes first (see apps)")
        elif app is None:
            app = word
        elif word.startswith("--") and eq and len(name) > 2:
            kwargs[name[2:].replace("-", "_")] = value
        else:
            pos.append(word)
    if app is None:
        raise usage_error(cmd, "which app? (see apps)")
    return app, pos, kwargs, prio, caps or None


_CAP_KINDS = {"tools": "set", "memory": "set", "models": "set", "can_spawn": "bool", "signal": "bool",
              "see_args": "bool", "max_children": "int", "token_budget": "int", "syscall_budget": "int",
              "time_budget": "float", "model_time_budget": "float"}


def parse_caps(cmd: str, spec: str) -> dict[str, Any]:
    """`tools=a,b memory=notes can_spawn=no token_budget=5000` -> a caps dict for Kernel.spawn."""
    out: dict[str, Any] = {}
    for item in spec.replace(";", " ").split():
        key, eq, value = item.partition("=")
        kind = _CAP_KINDS.get(key)
        if kind is None or not eq:
            close = difflib.get_close_matches(key, _CAP_KINDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (capabilities: {', '.join(_CAP_KINDS)})"
            raise usage_error(cmd, f"bad capability {item!r}; write KEY=VALUE{hint}")
        if kind == "set":
            out[key] = [] if value.lower() in ("", "none") else [v for v in value.split(",") if v]
        elif kind == "bool":
            if value.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise usage_error(cmd, f"{key} is yes or no, not {value!r}")
            out[key] = value.lower() in ("yes", "true", "1")
        else:
            out[key] = parse_number(cmd, key, value, float if kind == "float" else int)
    return out


def dispatch_words(line: str) -> tuple[Command, list[str]] | None:
    """Parse a line into (command, args); None for a blank line or a comment."""
    words = split(line)
    if not words:
        return None
    return lookup(words[0]), words[1:]


def register_all() -> None:
    """Import the modules that hold command handlers (registration happens on import)."""
    from llmasos.shell import attach, builtins, top  # noqa: F401
