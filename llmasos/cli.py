"""The `llmasos` command: run an app, list apps and models, open the shell, serve the HTTP API.

Rule: each command is a thin wrapper over the Python API; errors the user can fix print as one line
(no traceback) and exit with status 2.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import anyio
import typer

from llmasos.errors import LlmasosError

cli = typer.Typer(
    name="llmasos", no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
    help="An operating system for LLM agents. With no command: open the shell.",
)

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name or path (default: smollm2-135m); 'fake' for the scripted test engine")]
PolicyOpt = Annotated[str, typer.Option("--policy", help="Scheduling policy: fifo, rr, priority, fair")]


def _engine_spec(model: str | None) -> Any:
    if model == "fake":
        from llmasos.engine.fake import FakeEngine

        return FakeEngine()
    return model


def fail(message: str) -> None:
    """Print a user-facing error and exit 2."""
    typer.echo(f"llmasos: {message}", err=True)
    raise typer.Exit(2)


@cli.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        shell_cmd = getattr(sys.modules[__name__], "shell", None)
        if shell_cmd is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        ctx.invoke(shell_cmd)


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    app: Annotated[str, typer.Argument(help="App name, file.py[:app] or module:attr")],
    model: ModelOpt = None,
    policy: PolicyOpt = "fifo",
) -> None:
    """Boot a kernel, run APP [ARGS...] to the end, stream its output, print its exit value.

    Arguments of the form --key=value become keyword arguments of the app's main. Standard input,
    when piped, becomes the process's stdin.
    """
    args, kwargs = _split_args(ctx.args)
    try:
        status = anyio.run(_run, app, args, kwargs, _engine_spec(model), policy)
    except LlmasosError as exc:
        fail(str(exc))
        return
    if status.state == "exited":
        if status.value is not None:
            typer.echo(f"[exit] {status.value!r}", err=True)
        raise typer.Exit(0)
    typer.echo(f"[{status.state}] {status.error or ''}".rstrip(), err=True)
    raise typer.Exit(1)


def _split_args(extra: list[str]) -> tuple[list[str], dict[str, str]]:
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for item in extra:
        if item.startswith("--") and "=" in item:
            key, _, value = item[2:].partition("=")
            kwargs[key.replace("-", "_")] = value
        else:
            args.append(item)
    return args, kwargs


async def _run(app: str, args: list[str], kwargs: dict[str, str], engine: Any, policy: str) -> Any:
    from llmasos.kernel import Kernel, KernelConfig

    async with Kernel(KernelConfig(engine=engine, policy=policy)) as kernel:
        pid = await kernel.spawn(app, *args, **kwargs)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump_stdout, kernel, pid)
            if not sys.stdin.isatty():
                tg.start_soon(_pump_stdin, kernel, pid)
            status = await kernel.wait(pid)
            tg.cancel_scope.cancel()
        return status


async def _pump_stdout(kernel: Any, pid: int) -> None:
    async for stream, text in kernel.follow(pid):
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(text)
        out.flush()


async def _pump_stdin(kernel: Any, pid: int) -> None:
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        try:
            if not line:
                kernel.close_stdin(pid)
                return
            kernel.write_stdin(pid, line)
        except LlmasosError:
            return


@cli.command()
def apps() -> None:
    """List the apps that can be spawned by name."""
    from rich.console import Console
    from rich.table import Table

    from llmasos.apps.registry import list_apps

    table = Table("name", "usage", "description", "source")
    for a in list_apps():
        table.add_row(a.name, a.usage(), a.description, a.source or "")
    Console().print(table)


@cli.command()
def shell(
    model: ModelOpt = None,
    policy: PolicyOpt = "fifo",
    connect: Annotated[str | None, typer.Option("--connect", help="Drive the kernel daemon at this URL instead of booting one")] = None,
) -> None:
    """Open the shell: spawn, watch and kill apps (type help inside).

    Boots a kernel in this process on the default model, or drives a running daemon with --connect URL.

    History is kept in $LLMASOS_HOME/shell_history; docs/shell.md lists every command.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the shell shows its own status
    try:
        anyio.run(_open_shell, _engine_spec(model), policy, connect, backend="asyncio")
    except LlmasosError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _open_shell(engine: Any, policy: str, url: str | None) -> None:
    from llmasos.shell import open_shell

    await open_shell(engine=engine, policy=policy, url=url)


@cli.command()
def models() -> None:
    """List the models this machine can run without a network."""
    from rich.console import Console
    from rich.table import Table

    from llmasos.engine.models import list_models

    table = Table("name", "source", "cached", "size")
    for m in list_models():
        table.add_row(m.name, m.source, "yes" if m.cached else "no", f"{m.size / 1e6:.0f} MB" if m.size else "")
    Console().print(table)


from llmasos.api.commands import register as _register_daemon_commands  # noqa: E402

_register_daemon_commands(cli)  # serve, and ps/spawn/kill/logs/wait against a daemon (llmasos/api/commands.py)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never hang on an unreachable hub
    cli()


if __name__ == "__main__":
    main()
