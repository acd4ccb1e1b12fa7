"""`llmasos tools ...`: list the tools, and register or remove MCP servers whose tools become llmasos tools.

Rule: a registration is checked before it is kept: ``add-mcp`` connects to the server and lists its
tools (``llmasos.tools.mcp``), and a server that does not answer is not registered. Registrations live
in ``$LLMASOS_HOME/mcp.json``; a kernel starts them at boot. No kernel is booted here.
"""

from __future__ import annotations

from typing import Annotated

import anyio
import typer
from rich.console import Console
from rich.table import Table

from llmasos.cli.options import fail, run_async
from llmasos.errors import LlmasosError
from llmasos.home import llmasos_home

tools = typer.Typer(name="tools", no_args_is_help=False, add_completion=False,
                    help="The tools processes may call, and MCP servers whose tools join them.")


@tools.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    """With no subcommand: list the tools."""
    if ctx.invoked_subcommand is None:
        list_()


async def _connect(servers: dict) -> list:
    """The servers connected just long enough to list their tools (in a registry of their own)."""
    from llmasos.tools import mcp
    from llmasos.tools.registry import ToolRegistry

    async with anyio.create_task_group() as tg:
        started = await mcp.start(tg, servers, ToolRegistry(), logs=llmasos_home() / "logs" / "mcp")
        for server in started:
            server.close()
    return started


@tools.command("list")
def list_() -> None:
    """List the built-in and installed tools, and each registered MCP server's tools (it connects to them)."""
    from llmasos.tools import mcp
    from llmasos.tools.registry import REGISTRY

    table = Table("TOOL", "DESCRIPTION", "SOURCE", title_justify="left")
    for t in REGISTRY.all():
        table.add_row(t.name, t.description, t.source)
    try:
        servers = mcp.registered(llmasos_home())
    except LlmasosError as exc:
        fail(str(exc))
    for server in run_async(_connect, servers) if servers else []:
        for t in server.tools:
            table.add_row(t.name, t.description, f"mcp: {server.name}")
        if server.error:
            table.add_row(f"{server.name}.*", f"[red]not connected: {server.error}[/]", f"mcp: {server.name}")
    Console().print(table)


@tools.command("add-mcp", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def add_mcp(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The server's name: its tools are named NAME.tool")],
    url: Annotated[str | None, typer.Option("--url", help="A streamable HTTP server's URL (instead of a "
                                                          "command after --)")] = None,
    header: Annotated[list[str] | None, typer.Option(
        "--header", help="With --url: an HTTP header sent on every request, 'Name: value' (repeatable), e.g. "
                         "'Authorization: Bearer TOKEN' for another `llmasos serve`")] = None,
) -> None:
    """Register an MCP server: `llmasos tools add-mcp NAME -- COMMAND ARGS...` (stdio) or `--url URL`.

    It is connected once to list its tools; one that does not answer is not registered. Processes use
    its tools like any other, when their capabilities name them (App(..., tools=["NAME.tool"])).
    """
    from llmasos.tools import mcp

    command = list(ctx.args)
    if bool(command) == bool(url):
        fail("give either a command after -- (llmasos tools add-mcp NAME -- python server.py) or --url URL")
    entry: dict = {"url": url} if url else {"command": command}
    if header:
        pairs = [h.partition(":") for h in header]
        if not url or any(not sep for _, sep, _ in pairs):
            fail("--header goes with --url, as 'Name: value'")
        entry["headers"] = {k.strip(): v.strip() for k, _, v in pairs}
    try:
        mcp.check_servers({name: entry})
    except LlmasosError as exc:
        fail(str(exc))
    (server,) = run_async(_connect, {name: entry})
    if server.error:
        fail(f"MCP server {name!r} did not answer, so it was not registered: {server.error}")
    try:
        mcp.register(llmasos_home(), name, entry)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"registered MCP server {name}: {', '.join(t.name for t in server.tools) or 'no tools'}")


@tools.command("remove-mcp")
def remove_mcp(name: Annotated[str, typer.Argument(help="A registered MCP server's name")]) -> None:
    """Forget an MCP server: the next kernel boots without its tools."""
    from llmasos.tools import mcp

    try:
        removed = mcp.unregister(llmasos_home(), name)
    except LlmasosError as exc:
        fail(str(exc))
    if not removed:
        fail(f"no MCP server named {name!r} is registered; `llmasos tools list` shows them")
    typer.echo(f"removed MCP server {name}")
