"""The commands that need no daemon: `run`, `shell`, and `serve` (which starts one).

Rule: each command is a thin wrapper over llmasos.client (``LocalClient.boot`` for a kernel in this
process) or over a face's entry point (the shell's ``open_shell``, the HTTP API's ``serve``); it never
imports the kernel itself.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from llmasos.cli.options import ConfigOpt, ModelOpt, PolicyOpt, fail, run_async, split_args, write_chunk
from llmasos.client.local import LocalClient, check_app, cluster_config, deployment
from llmasos.client.records import EngineStats
from llmasos.errors import LlmasosError
from llmasos.syscalls.types import ExitStatus

if TYPE_CHECKING:
    from llmasos.kernel.configfile import Deployment


def root(ctx: typer.Context) -> None:
    """With no command: open the shell."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(shell)


def run(
    ctx: typer.Context,
    app: Annotated[str, typer.Argument(help="App name, file.py[:app] or module:attr")],
    model: ModelOpt = None,
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Boot a kernel, run APP [ARGS...] to the end, stream its output, then say how it ended.

    Arguments of the form --key=value become keyword arguments of the app's main. Standard input is the
    process's stdin: piped, or typed in a terminal (a line at a time; Ctrl-D ends its input, Ctrl-C kills
    it). The last line is `[exit] VALUE`, or `[exited]` when it returned nothing or the text it wrote.
    """
    args, kwargs = split_args(ctx.args)
    try:
        check_app(app, args, kwargs)  # an unknown app or bad arguments fail at once, not after the model loads
        deployed = deployment(config, model, policy)
    except LlmasosError as exc:
        fail(str(exc))
    status, shown = run_async(_run, app, args, kwargs, deployed)
    if shown.interrupted:
        typer.echo("[killed] by Ctrl-C", err=True)
        raise typer.Exit(130)
    if status.state == "exited":
        typer.echo("[exited]" if shown.holds(status.value) else f"[exit] {status.value!r}", err=True)
        raise typer.Exit(0)
    typer.echo(f"[{status.state}] {status.error or ''}".rstrip(), err=True)
    raise typer.Exit(1)


class _Shown:
    """What `run` showed of the process: the end of its stdout, whether a line is left open, Ctrl-C."""

    TAIL = 4096  # characters of stdout kept to compare with the exit value

    def __init__(self) -> None:
        self.stdout = ""
        self.open_line = False  # the last chunk did not end a line
        self.interrupted = False

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        write_chunk(stream, text)
        if stream == "stdout":
            self.stdout = (self.stdout + text)[-self.TAIL:]
        self.open_line = not text.endswith("\n")

    def end_line(self) -> None:
        """Before our own line: end the process's last line (in a terminal it would be glued on)."""
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False

    def holds(self, value: object) -> bool:
        """The exit value says nothing new: None, or the text it wrote last."""
        if value is None:
            return True
        return isinstance(value, str) and bool(value.strip()) and self.stdout.rstrip().endswith(value.strip())


async def _run(app: str, args: list[str], kwargs: dict[str, str], deployed: Deployment) -> tuple[ExitStatus, _Shown]:
    shown = _Shown()
    async with LocalClient.boot(deployed.config, deployed.apps) as client:
        pid = await client.spawn(app, args, kwargs)
        with anyio.CancelScope() as interrupt:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_on_sigint, interrupt)
                tg.start_soon(_pump_tty if sys.stdin.isatty() else _pump_stdin, client, pid)
                await _pump_stdout(client, pid, shown)  # all it wrote, until it ends (it is not reaped before)
                tg.cancel_scope.cancel()
        shown.end_line()
        if interrupt.cancelled_caught:  # killed, not left to be resumed at the next boot
            shown.interrupted = True
            await client.kill(pid)
        return await client.wait(pid), shown


async def _on_sigint(scope: anyio.CancelScope) -> None:
    """Ctrl-C ends the run (the caller kills the process) instead of raising in the middle of it."""
    try:
        signals = anyio.open_signal_receiver(signal.SIGINT)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return
    with signals as received:
        async for _ in received:
            scope.cancel()
            return


async def _pump_stdout(client: LocalClient, pid: int, shown: _Shown) -> None:
    async for stream, text in client.follow(pid):
        shown.write(stream, text)


async def _pump_stdin(client: LocalClient, pid: int) -> None:
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        try:
            if not line:
                await client.close_stdin(pid)
                return
            await client.write_stdin(pid, line)
        except LlmasosError:
            return


async def _pump_tty(client: LocalClient, pid: int) -> None:
    """A terminal as stdin: each line typed goes to the process; Ctrl-D on an empty line closes its input.

    The terminal stays in its own (cooked) mode, so it echoes and edits the line; reading waits on the
    event loop, never in a thread, so nothing is left blocked on the terminal when the process ends.
    """
    fd = sys.stdin.fileno()
    decoder = codecs.getincrementaldecoder(sys.stdin.encoding or "utf-8")(errors="replace")
    pending = ""
    try:
        while True:
            await _readable(fd)
            data = os.read(fd, 65536)
            pending += decoder.decode(data, final=not data)
            *lines, pending = pending.split("\n")
            for line in lines:
                await client.write_stdin(pid, line + "\n")
            if not data:  # Ctrl-D: what was typed before it, then the end of its input
                if pending:
                    await client.write_stdin(pid, pending)
                await client.close_stdin(pid)
                return
    except LlmasosError:  # it ended meanwhile
        return


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        await ready.wait()
    finally:
        loop.remove_reader(fd)


def shell(
    model: ModelOpt = None,
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
    connect: Annotated[str | None, typer.Option(
        "--connect", help="Drive the kernel daemon at this URL instead of booting one")] = None,
) -> None:
    """Open the shell: spawn, watch and kill apps (type help inside).

    Boots a kernel in this process on the default model, or drives a running daemon with --connect URL.

    History is kept in $LLMASOS_HOME/shell_history; docs/shell.md lists every command.
    """
    from llmasos.shell import open_shell

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the shell shows its own status
    run_async(lambda: open_shell(model=model, policy=policy, url=connect, config=config))


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port)")] = 8765,
    model: ModelOpt = None,
    policy: PolicyOpt = None,
    config: ConfigOpt = None,
    database: Annotated[str | None, typer.Option(
        "--database", envvar="LLMASOS_DATABASE", help="Database URL ($LLMASOS_DATABASE); postgresql://...: "
        "join the cluster of nodes sharing it (docs/cluster.md)")] = None,
    node: Annotated[str | None, typer.Option("--node", help="This cluster node's id (default: host-pid-random)")] = None,
    lease: Annotated[float | None, typer.Option(
        "--lease", help="Cluster: seconds without a heartbeat before another node adopts this one's processes")] = None,
) -> None:
    """Boot a kernel and serve its HTTP API: processes, stats, and OpenAI-compatible chat completions.

    --model NAME=SPEC (repeatable) or a config file (--config, else ./llmasos.toml) loads several models;
    a request's "model" picks one (GET /v1/models lists them).

    Every request needs `Authorization: Bearer TOKEN`.

    The token is $LLMASOS_API_TOKEN, or the one in $LLMASOS_HOME/api_token (made at the first start).

    Stop with Ctrl-C. docs/http.md lists the endpoints; interactive docs are at URL/docs.
    """
    from llmasos.api.http import serve as serve_api
    from llmasos.client.wire import server_token

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        deployed = deployment(config, model, policy)
        deployed.config = cluster_config(deployed.config, database, node, lease)
        token, where = server_token(deployed.config.home)
    except (LlmasosError, OSError) as exc:
        fail(str(exc))
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"llmasos: warning: listening on {host}: anyone who can reach it and has the token "
                   "can run processes here", err=True)
    typer.echo(f"llmasos: loading {_loading(deployed)}…", err=True)

    def ready(url: str, stats: EngineStats) -> None:
        typer.echo(f"llmasos: serving {url} (model {stats.engine}, policy {stats.policy})\n"
                   f"  token: {where}   docs: {url}/docs   OpenAI base_url: {url}/v1\n"
                   f"  try: llmasos ps --url {url}   or   llmasos shell --connect {url}")
        sys.stdout.flush()

    run_async(lambda: serve_api(deployed.config, host, port, token=token, on_ready=ready, apps=deployed.apps))


def _loading(deployed: Deployment) -> str:
    """What is being loaded, for the line printed meanwhile."""
    cfg = deployed.config
    if cfg.models is None:
        engine = cfg.engine
        return f"model {engine if isinstance(engine, str) else getattr(engine, 'name', None) or 'smollm2-135m'}"
    return "models " + ", ".join(cfg.models) + (f" from {deployed.path}" if deployed.path else "")
