"""The commands that drive a running daemon: `ps`, `spawn`, `kill`, `logs`, `wait` (each takes --url).

Rule: each command is one ``RemoteClient`` call or a few, and prints what the shell would print for
the same records (llmasos.client.tables). Nothing here loads the kernel, the engine or torch, so these
commands start in a blink.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from llmasos.cli.options import DEFAULT_URL, PidArg, PrioOpt, UrlOpt, run_async, split_args, write_chunk
from llmasos.client.remote import RemoteClient
from llmasos.client.tables import ended_line, ps_table
from llmasos.client.wire import DaemonUnreachable, Unauthorized
from llmasos.errors import LlmasosError
from llmasos.syscalls.types import ProcInfo

T = TypeVar("T")


def _remote(url: str, fn: Callable[[RemoteClient], Awaitable[T]]) -> T:
    """Run fn(client) against the daemon at url; a user-facing error exits 2 with one line."""

    async def main() -> T:
        async with RemoteClient(url) as client:
            return await fn(client)

    return run_async(main)


def ps(
    all: Annotated[bool, typer.Option("--all", "-a", help="Also ended processes not yet reaped")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """The daemon's process table."""
    rows: list[ProcInfo] = _remote(url, lambda c: c.ps(all))
    if not rows:
        typer.echo("no processes" + ("" if all else " running (ps -a shows ended ones)"), err=True)
        return
    Console(highlight=False, width=max(120, Console().width)).print(ps_table(rows))


def spawn(
    ctx: typer.Context,
    app: Annotated[str, typer.Argument(help="App name, file.py[:app] or module:attr (a path is read by the daemon)")],
    prio: PrioOpt = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Start APP [ARGS...] on the daemon and print its pid (--key=value become keyword arguments)."""
    args, kwargs = split_args(ctx.args)
    typer.echo(_remote(url, lambda c: c.spawn(app, args, kwargs, priority=prio)))


def kill(
    pids: Annotated[list[int], typer.Argument(help="Process ids")],
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Kill processes (and their children) on the daemon."""

    async def go(client: RemoteClient) -> int:
        bad = 0
        for pid in pids:
            try:
                typer.echo(f"[{pid}] killed" if await client.kill(pid) else f"[{pid}] had already ended")
            except (DaemonUnreachable, Unauthorized):
                raise
            except LlmasosError as exc:  # one bad pid does not stop the others
                typer.echo(f"llmasos: {exc}", err=True)
                bad += 1
        return bad

    if _remote(url, go):
        raise typer.Exit(2)


def logs(
    pid: PidArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the process ends")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """What a process wrote to stdout and stderr (stderr goes to stderr)."""

    async def go(client: RemoteClient) -> None:
        if follow:
            async for stream, text in client.follow(pid):
                write_chunk(stream, text)
        else:
            for stream, text in await client.output(pid):
                write_chunk(stream, text)

    _remote(url, go)


def wait(
    pid: PidArg,
    timeout: Annotated[float | None, typer.Option("--timeout", "-t", help="Give up after this many seconds")] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Wait for a process to end and print how it ended; exit 0 if it exited, 1 if not.

    The process is not reaped, so `logs` still shows what it wrote (ps -a lists it until the daemon
    reaps the oldest ended processes, past max_zombies).
    """
    info: ProcInfo = _remote(url, lambda c: c.ended(pid, timeout))
    typer.echo(ended_line(info.pid, info.state, info.exit_value, info.error))
    raise typer.Exit(0 if info.state == "exited" else 1)
