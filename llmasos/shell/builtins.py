"""The shell's plain commands: each asks the kernel once and prints a table or a line.

Rule: no command here holds the terminal; a handler returns as soon as its answer is printed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.text import Text

from llmasos.client import NotAvailable
from llmasos.client.tables import apps_table, ended_line, loaded_models_table, models_table, ps_table, short
from llmasos.errors import LlmasosError
from llmasos.shell.commands import (
    ALIASES, COMMANDS, ExitShell, command, lookup, parse_number, parse_pid, parse_spawn, take_options,
    usage_error,
)

if TYPE_CHECKING:
    from llmasos.shell.repl import Shell


HELP_ORDER = ("help", "apps", "spawn", "run", "ps", "kill", "wait", "logs", "attach", "top", "strace", "mem",
              "tools", "sched", "models", "clear", "exit")


# -- commands ---------------------------------------------------------------------------------------------


@command("help [COMMAND]", complete="command")
async def help_(sh: Shell, args: list[str]) -> None:
    """Show the commands, or one command's usage and details.

    Keys at the prompt: Tab completes commands, apps, pids and tools; Up/Down and Ctrl-R search the
    history; Ctrl-C clears the line; Ctrl-D (or exit) leaves the shell.
    """
    if len(args) > 1:
        raise usage_error("help", "give one command name")
    if args:
        cmd = lookup(args[0])
        sh.print(Text(f"usage: {cmd.usage}", style="bold"))
        sh.print(Text(cmd.summary))
        if cmd.help:
            sh.print(Text("\n" + cmd.help))
        aliases = [a for a, target in ALIASES.items() if target == cmd.name]
        if aliases:
            sh.print(Text(f"\naliases: {', '.join(aliases)}", style="dim"))
        return
    table = sh.table("command", "what it does", title=None)
    ordered = [COMMANDS[n] for n in HELP_ORDER if n in COMMANDS]
    for cmd in ordered + [c for c in COMMANDS.values() if c not in ordered]:
        synopsis = " ".join(w for w in re.sub(r"\[--[^\]]*\]", "", cmd.usage).split())
        table.add_row(Text(synopsis, style="bold"), Text(cmd.summary))
    sh.print(table)
    sh.print(Text("help COMMAND for details. Try: spawn chat, attach 1 (type, then Ctrl-] to detach), "
                  "ps, kill 1. Ctrl-D or exit leaves.", style="dim"))


@command("apps", complete=None)
async def apps(sh: Shell, args: list[str]) -> None:
    """List the apps you can spawn by name.

    Built-ins first, then those of installed packages (entry point group llmasos.apps).

    A path works too: spawn ./myapp.py or spawn ./myapp.py:app or spawn package.module:app.
    """
    if args:
        raise usage_error("apps", "takes no arguments")
    rows = await sh.client.apps()
    sh.cache.apps = [a.name for a in rows]
    sh.print(apps_table(rows, color=sh.color))


@command("spawn APP [ARGS...] [--prio N] [--caps K=V...] [--KEY=VALUE...]", complete="app",
         flags=("--prio", "--caps"))
async def spawn(sh: Shell, args: list[str]) -> None:
    """Start APP in the background and print its pid at once.

    Words after the app are its arguments; --key=value words become keyword arguments of its main
    (e.g. spawn chat --max_tokens=64); after -- every word goes to the app unchanged.
    --prio N sets its priority (nice value: lower runs first under the priority policy).
    --caps K=V limits its rights: tools=a,b  memory=ns1,ns2  can_spawn=no  max_children=N
    token_budget=N  syscall_budget=N (repeat --caps or quote several: --caps "tools=none can_spawn=no").
    When it ends the shell prints a notice such as [3] exited: 'done'. See logs, attach, wait, kill.
    """
    app, pos, kwargs, prio, caps = parse_spawn("spawn", args)
    pid = await sh.client.spawn(app, pos, kwargs, priority=prio, caps=caps)
    sh.watch(pid)
    try:
        name = (await sh.client.info(pid)).app
    except LlmasosError:  # already ended and reaped
        name = app
    sh.print(Text(f"[{pid}] {name}", style="bold"))


@command("ps [-a]", flags=("-a",))
async def ps(sh: Shell, args: list[str]) -> None:
    """Show the process table (-a: also the ended ones not yet reaped).

    STATE is ready, running, waiting:WHY (llm, stdin, recv, sleep, child, tool), exited, killed or
    crashed. TOKENS are prompt/completion tokens; MODEL is its share of forward-step time.
    """
    opts, rest = take_options("ps", args, {"-a": False})
    if rest:
        raise usage_error("ps", f"unexpected {rest[0]!r}")
    rows = await sh.client.ps(all=bool(opts.get("-a")))
    if not rows:
        sh.note("no processes" + ("" if opts.get("-a") else " running (ps -a shows ended ones)"))
        return
    sh.print(ps_table(rows, color=sh.color))


@command("kill PID...", complete="pid")
async def kill(sh: Shell, args: list[str]) -> None:
    """Kill processes (and their children). The kernel frees what they held."""
    if not args:
        raise usage_error("kill", "which pid? (see ps)")
    pids = [parse_pid("kill", a) for a in args]
    for pid in pids:
        try:
            info = await sh.client.info(pid)
            sh.quiet.add(pid)  # this line is the notice (held back before the kill: it could come first)
            try:
                killed = await sh.client.kill(pid)
            except BaseException:
                sh.quiet.discard(pid)
                raise
            if killed:
                sh.print(Text(f"[{pid}] {info.app} killed", style="yellow"))
            else:
                sh.quiet.discard(pid)
                sh.note(f"[{pid}] had already ended ({info.state})")
        except NotAvailable:
            raise
        except Exception as exc:  # one bad pid does not stop the others
            sh.error(str(exc))


@command("wait PID [-t SECONDS]", complete="pid", flags=("-t",))
async def wait(sh: Shell, args: list[str]) -> None:
    """Wait for a process to end and print how it ended.

    The process is then reaped (it leaves ps -a). -t SECONDS gives up after that long. Ctrl-C stops
    waiting; the process keeps running.
    """
    opts, rest = take_options("wait", args, {"-t": True})
    if len(rest) != 1:
        raise usage_error("wait", "give one pid")
    pid = parse_pid("wait", rest[0])
    timeout = parse_number("wait", "-t", opts["-t"], float) if "-t" in opts else None
    sh.quiet.add(pid)
    try:
        status = await sh.client.wait(pid, timeout)
    except BaseException:
        sh.quiet.discard(pid)
        raise
    sh.print(Text(ended_line(status.pid, status.state, status.value, status.error)))


@command("mem PID", complete="pid")
async def mem(sh: Shell, args: list[str]) -> None:
    """Show a process's context (its messages) and its memory keys."""
    if len(args) != 1:
        raise usage_error("mem", "give one pid")
    pid = parse_pid("mem", args[0])
    view = await sh.client.mem(pid)
    if view.context:
        table = sh.table("#", "ROLE", "CONTENT", title=f"context of {pid}")
        for i, m in enumerate(view.context):
            table.add_row(str(i), str(m.get("role", "")), Text(short(m.get("content") or "", 100)))
        sh.print(table)
    else:
        sh.note(f"process {pid} has no context messages")
    if view.keys:
        table = sh.table("NAMESPACE", "KEYS", title=f"memory of {pid}")
        for ns, keys in sorted(view.keys.items()):
            table.add_row(ns, Text(", ".join(keys)))
        sh.print(table)
    else:
        sh.note(f"process {pid} has no memory keys")
    if view.note:
        sh.note(view.note)


@command("tools")
async def tools(sh: Shell, args: list[str]) -> None:
    """List the tools processes may call (grant them with spawn --caps tools=...)."""
    if args:
        raise usage_error("tools", "takes no arguments")
    rows = await sh.client.tools()
    sh.cache.tools = [r.name for r in rows]
    if not rows:
        sh.note("no tools registered")
        return
    table = sh.table("TOOL", "DESCRIPTION")
    for r in rows:
        table.add_row(Text(r.name, style="bold"), Text(r.description))
    sh.print(table)


@command("sched [POLICY [MODEL]]", complete="policy")
async def sched(sh: Shell, args: list[str]) -> None:
    """Show the scheduling policy, or switch to another one (of every model, or of MODEL only).

    The switch is immediate; queued requests move over in arrival order.
    fifo: first come first served. rr: round robin, a quantum of tokens each. priority: lower prio
    value first. fair: least model service first. With several models loaded, each has its own policy
    (see models).
    """
    if len(args) > 2:
        raise usage_error("sched", "give at most a policy and a model")
    names = await sh.client.policies()
    sh.cache.policies = names
    if args:
        if args[0] not in names:
            raise usage_error("sched", f"unknown policy {args[0]!r}; this kernel offers: {', '.join(names)}")
        await sh.client.set_policy(args[0], args[1] if len(args) > 1 else None)
    stats = await sh.client.stats()
    others = ", ".join(n for n in names if n != stats.policy)
    sh.print(Text.assemble(("policy: ", ""), (stats.policy, "bold"), (f"   (others: {others})" if others else "", "dim")))
    models = await sh.client.model_stats()
    if len(models) > 1:
        sh.print(Text("models: " + ", ".join(f"{m.name} {m.policy}" for m in models), style="dim"))


@command("models [-a]", flags=("-a",))
async def models(sh: Shell, args: list[str]) -> None:
    """List the loaded models: engine, kind, policy, queue (running/waiting), batch, tokens/s.

    Tokens/s is the average since boot (top shows it live). A generate names one with model="NAME";
    the one marked (default) answers the others. -a also lists the models this machine could load.
    """
    opts, rest = take_options("models", args, {"-a": False})
    if rest:
        raise usage_error("models", f"unexpected {rest[0]!r}")
    sh.print(loaded_models_table(await sh.client.model_stats(), color=sh.color))
    if "-a" in opts:
        sh.print(Text(""))
        sh.print(models_table(await sh.client.models(), color=sh.color))


@command("clear")
async def clear(sh: Shell, args: list[str]) -> None:
    """Clear the screen (Ctrl-L at the prompt does the same)."""
    if args:
        raise usage_error("clear", "takes no arguments")
    sh.clear()


@command("exit [-f]", flags=("-f",))
async def exit_(sh: Shell, args: list[str]) -> None:
    """Leave the shell (Ctrl-D does the same).

    With a kernel in this process, running processes are killed, so it asks first (exit -f does not
    ask); connected to a daemon, the shell only detaches and they keep running.
    """
    if args and args != ["-f"]:
        raise usage_error("exit", "takes no arguments (exit -f skips the question)")
    if await sh.may_exit(force=bool(args)):
        raise ExitShell()
