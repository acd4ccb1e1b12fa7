"""Command-line parsing: words, options, spawn arguments, capabilities, suggestions, completion."""

from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from llmasos.shell.commands import (
    UnknownCommand, UsageError, dispatch_words, lookup, parse_caps, parse_pid, parse_spawn, register_all,
    split, take_options,
)
from llmasos.shell.repl import ShellCompleter

register_all()


def test_split_quotes_and_comments() -> None:
    assert split('spawn echo "hello world" # a comment') == ["spawn", "echo", "hello world"]
    assert split("   ") == []


def test_unclosed_quote_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot parse"):
        split('spawn echo "oops')


def test_unknown_command_suggests_the_closest() -> None:
    with pytest.raises(UnknownCommand, match="did you mean 'spawn'"):
        lookup("spwan")
    with pytest.raises(UnknownCommand, match="type help") as err:
        lookup("zzzzzz")
    assert "did you mean" not in str(err.value)


def test_aliases() -> None:
    assert lookup("quit").name == "exit"
    assert lookup("?").name == "help"


def test_dispatch_words() -> None:
    cmd, args = dispatch_words("kill 1 2 3")
    assert cmd.name == "kill" and args == ["1", "2", "3"]
    assert dispatch_words("# just a comment") is None


def test_parse_pid() -> None:
    assert parse_pid("kill", "12") == 12
    assert parse_pid("kill", "%3") == 3
    for bad in ("abc", "0", "-1", "1.5"):
        with pytest.raises(UsageError, match="not a pid"):
            parse_pid("kill", bad)


def test_take_options() -> None:
    opts, rest = take_options("logs", ["-f", "3", "-n", "5"], {"-f": False, "-n": True})
    assert opts == {"-f": True, "-n": "5"} and rest == ["3"]
    opts, rest = take_options("logs", ["-n=7", "3"], {"-f": False, "-n": True})
    assert opts == {"-n": "7"}
    with pytest.raises(UsageError, match="unknown option '-x'"):
        take_options("logs", ["-x", "3"], {"-f": False, "-n": True})
    with pytest.raises(UsageError, match="-n needs a value"):
        take_options("logs", ["3", "-n"], {"-f": False, "-n": True})


def test_parse_spawn_splits_shell_options_from_app_arguments() -> None:
    app, pos, kwargs, prio, caps = parse_spawn(
        "spawn", ["chat", "--prio", "5", "be brief", "--max-tokens=20", "--caps", "tools=calculator,clock"])
    assert app == "chat" and pos == ["be brief"] and kwargs == {"max_tokens": "20"}
    assert prio == 5 and caps == {"tools": ["calculator", "clock"]}
    app, pos, kwargs, prio, caps = parse_spawn("spawn", ["echo", "--", "--prio", "x=1"])
    assert pos == ["--prio", "x=1"] and prio is None and caps is None


def test_parse_spawn_errors() -> None:
    with pytest.raises(UsageError, match="which app"):
        parse_spawn("spawn", [])
    with pytest.raises(UsageError, match="takes a number"):
        parse_spawn("spawn", ["echo", "--prio", "high"])
    with pytest.raises(UsageError, match="unknown option"):
        parse_spawn("spawn", ["--bogus", "echo"])
    with pytest.raises(UsageError, match="usage: spawn APP"):
        parse_spawn("spawn", ["echo", "--caps"])


def test_parse_caps() -> None:
    assert parse_caps("spawn", "tools=none can_spawn=no token_budget=500") == {
        "tools": [], "can_spawn": False, "token_budget": 500}
    assert parse_caps("spawn", "memory=a,b;syscall_budget=9") == {"memory": ["a", "b"], "syscall_budget": 9}
    with pytest.raises(UsageError, match="did you mean tools"):
        parse_caps("spawn", "tool=x")
    with pytest.raises(UsageError, match="yes or no"):
        parse_caps("spawn", "can_spawn=maybe")


class _FakeShell:
    def __init__(self) -> None:
        from llmasos.shell.repl import Cache

        self.cache = Cache(apps=["chat", "echo", "hello"], pids={1: "chat waiting", 12: "echo exited"},
                           tools=["calculator", "clock"], policies=["fair", "fifo", "priority", "rr"])


def complete(text: str) -> list[str]:
    completer = ShellCompleter(_FakeShell())  # type: ignore[arg-type]
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_completion() -> None:
    assert complete("sp") == ["spawn"]
    assert "strace" in complete("st")
    assert complete("spawn c") == ["chat"]
    assert complete("run e") == ["echo"]
    assert complete("spawn chat ") == []  # the app's own arguments are not guessed
    assert complete("kill ") == ["12", "1"]
    assert complete("attach 1") == ["12", "1"]
    assert complete("sched r") == ["rr"]
    assert complete("help att") == ["attach"]
    assert complete("logs 3 -") == ["-f", "-n"]
    assert complete("spawn chat --caps tools=c") == ["tools=calculator", "tools=clock"]
    assert complete("spawn chat --caps tools=calculator,c") == ["tools=calculator,calculator", "tools=calculator,clock"]
    assert complete("nosuch ") == []
