"""The daemon's commands: `llmasos serve`, and `ps`, `spawn`, `kill`, `logs`, `wait` against a daemon.

Rule: registered on the `llmasos` Typer app by ``register(cli)`` (cli.py stays small); each command is
one RemoteClient call or two, and an error the user can fix is one line with exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
import typer

from llmasos.errors import LlmasosError

T = TypeVar("T")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name or path (default: smollm2-135m); 'fake' for the scripted test engine")]
PolicyOpt = Annotated[str, typer.Option("--policy", help="Scheduling policy: fifo, rr, priority, fair")]
UrlOpt = Annotated[str, typer.Option("--url", envvar="LLMASOS_URL", help="The daemon's URL ($LLMASOS_URL)")]
DEFAULT_URL = "http://127.0.0.1:8765"


def _remote(url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run fn(client) against the daemon at url; a user-facing error exits 2 with one line."""
    from llmasos.api.client import RemoteClient
    from llmasos.cli import fail

    async def main() -> T:
        async with RemoteClient(url) as client:
            return await fn(client)

    try:
        return anyio.run(main)
    except LlmasosError as exc:
        fail(str(exc))
        raise  # not reached: fail exits
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def register(cli: typer.Typer) -> None:
    """Add serve, ps, spawn, kill, logs and wait to the `llmasos` command."""

    @cli.command()
    def serve(
        host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default)")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port)")] = 8765,
        model: ModelOpt = None,
        policy: PolicyOpt = "fifo",
    ) -> None:
        """Boot a kernel and serve its HTTP API: processes, stats, and OpenAI-compatible chat completions.

        Every request needs `Authorization: Bearer TOKEN`.

        The token is $LLMASOS_API_TOKEN, or the one in $LLMASOS_HOME/api_token (made at the first start).

        Stop with Ctrl-C. docs/http.md lists the endpoints; interactive docs are at URL/docs.
        """
        from llmasos.api.auth import server_token
        from llmasos.api.http import serve as serve_api
        from llmasos.cli import _engine_spec, fail
        from llmasos.kernel import KernelConfig

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            config = KernelConfig(engine=_engine_spec(model), policy=policy)
            token, where = server_token(config.home)
        except (LlmasosError, OSError) as exc:
            fail(str(exc))
            return
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"llmasos: warning: listening on {host}: anyone who can reach it and has the token "
                       "can run processes here", err=True)
        typer.echo(f"llmasos: loading model {model or 'smollm2-135m'}…", err=True)

        def ready(url: str, kernel: Any) -> None:
            name = getattr(kernel.engine, "name", model)
            typer.echo(f"llmasos: serving {url} (model {name}, policy {kernel.policy})\n"
                       f"  token: {where}   docs: {url}/docs   OpenAI base_url: {url}/v1\n"
                       f"  try: llmasos ps --url {url}   or   llmasos shell --connect {url}")
            sys.stdout.flush()

        try:
            anyio.run(lambda: serve_api(config, host, port, token=token, on_ready=ready), backend="asyncio")
        except LlmasosError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    @cli.command()
    def ps(
        all: Annotated[bool, typer.Option("--all", "-a", help="Also ended processes not yet reaped")] = False,
        url: UrlOpt = DEFAULT_URL,
    ) -> None:
        """The daemon's process table."""
        rows = _remote(url, lambda c: c.ps(all))
        if not rows:
            typer.echo("no processes" + ("" if all else " running (ps -a shows ended ones)"), err=True)
            return
        from rich.console import Console
        from rich.table import Table

        from llmasos.shell.builtins import short

        table = Table("PID", "PPID", "APP", "STATE", "PRIO", "TOKENS in/out", "CALLS", "ARGS / RESULT",
                      box=None, pad_edge=False)
        for p in sorted(rows, key=lambda r: r.pid):
            state = p.state + (f":{p.waiting_on}" if p.waiting_on else "")
            tail = " ".join(short(a, 20) for a in p.args)
            if p.state == "exited":
                tail = "= " + short(p.exit_value, 40)
            elif p.error:
                tail = short(p.error.strip().splitlines()[-1], 40)
            table.add_row(str(p.pid), str(p.ppid), p.app, state, str(p.priority),
                          f"{p.usage.prompt_tokens}/{p.usage.completion_tokens}", str(p.usage.syscalls), tail)
        Console(highlight=False, width=max(100, Console().width)).print(table)

    @cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def spawn(
        ctx: typer.Context,
        app: Annotated[str, typer.Argument(help="App name, file.py[:app] or module:attr (a path is read by the daemon)")],
        prio: Annotated[int | None, typer.Option("--prio", help="Priority (higher runs first under the priority policy)")] = None,
        url: UrlOpt = DEFAULT_URL,
    ) -> None:
        """Start APP [ARGS...] on the daemon and print its pid (--key=value become keyword arguments)."""
        from llmasos.cli import _split_args

        args, kwargs = _split_args(ctx.args)
        typer.echo(_remote(url, lambda c: c.spawn(app, args, kwargs, priority=prio)))

    @cli.command()
    def kill(
        pids: Annotated[list[int], typer.Argument(help="Process ids")],
        url: UrlOpt = DEFAULT_URL,
    ) -> None:
        """Kill processes (and their children) on the daemon."""

        async def go(client: Any) -> int:
            bad = 0
            for pid in pids:
                try:
                    typer.echo(f"[{pid}] killed" if await client.kill(pid) else f"[{pid}] had already ended")
                except LlmasosError as exc:
                    if type(exc).__name__ in ("DaemonUnreachable", "Unauthorized"):
                        raise
                    typer.echo(f"llmasos: {exc}", err=True)
                    bad += 1
            return bad

        if _remote(url, go):
            raise typer.Exit(2)

    @cli.command()
    def logs(
        pid: Annotated[int, typer.Argument(help="Process id")],
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the process ends")] = False,
        url: UrlOpt = DEFAULT_URL,
    ) -> None:
        """What a process wrote to stdout and stderr (stderr goes to stderr)."""

        def show(stream: str, text: str) -> None:
            out = sys.stderr if stream == "stderr" else sys.stdout
            out.write(text)
            out.flush()

        async def go(client: Any) -> None:
            if follow:
                async for stream, text in client.follow(pid):
                    show(stream, text)
            else:
                for stream, text in await client.output(pid):
                    show(stream, text)

        _remote(url, go)

    @cli.command("wait")
    def wait_(
        pid: Annotated[int, typer.Argument(help="Process id")],
        timeout: Annotated[float | None, typer.Option("--timeout", "-t", help="Give up after this many seconds")] = None,
        url: UrlOpt = DEFAULT_URL,
    ) -> None:
        """Wait for a process to end, print how it ended and reap it; exit 0 if it exited, 1 if not."""
        from llmasos.shell.builtins import ended_line

        status = _remote(url, lambda c: c.wait(pid, timeout))
        typer.echo(ended_line(status.pid, status.state, status.value, status.error))
        raise typer.Exit(0 if status.state == "exited" else 1)
