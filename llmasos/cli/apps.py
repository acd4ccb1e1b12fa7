"""`llmasos apps ...`: list, inspect, install, remove, scaffold and search for apps (the app store).

Rule: nothing here imports an installed package: manifests are read statically (apps/manifest.py), a
package is installed only after its user accepted the capabilities its manifest asks for (or passed
``--yes``), and refusing leaves it uninstalled (apps/store.py). `llmasos apps` alone lists, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llmasos.cli.options import fail
from llmasos.client.local import app_rows
from llmasos.client.tables import apps_table
from llmasos.errors import LlmasosError

apps = typer.Typer(name="apps", no_args_is_help=False, add_completion=False,
                   help="The apps that can be spawned, and the app store: info, install, remove, new, search.")

IndexOpt = Annotated[str | None, typer.Option(
    "--index", help="The app index: a JSON file or an http(s) URL (default: $LLMASOS_APP_INDEX or "
                    "$LLMASOS_HOME/index.json)")]


@apps.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    """With no subcommand: list the apps."""
    if ctx.invoked_subcommand is None:
        list_()


@apps.command("list")
def list_() -> None:
    """List the apps that can be spawned by name, and installed apps that are not enabled."""
    from llmasos.apps import store

    console = Console()
    console.print(apps_table(app_rows()))
    try:
        others = [i for i in store.installed() if not i.enabled or i.problem]
    except LlmasosError as exc:
        fail(str(exc))
    if others:
        table = Table("INSTALLED APP", "PACKAGE", "STATE", title="installed, not runnable", title_justify="left")
        for i in others:
            state = f"unreadable: {i.problem}" if i.problem else "not enabled: llmasos apps install " + i.name
            table.add_row(i.name, i.package, state)
        console.print(table)


@apps.command()
def info(name: Annotated[str, typer.Argument(help="An app's name")]) -> None:
    """Show an app's manifest: version, description, where it comes from, the capabilities it asks for."""
    from llmasos.apps import store
    from llmasos.apps.registry import builtin_names, find_app

    console = Console()
    found = next((i for i in store.installed() if i.name == name), None)
    if found is not None:
        if found.manifest is None:
            fail(f"app {name!r} ({found.entry}) has no readable manifest: {found.problem}")
        m = found.manifest
        rows = {"name": m.name, "version": m.version, "description": m.description, "package": found.package,
                "entry point": found.entry, "enabled": "yes" if found.enabled else "no",
                "runs": "in the kernel (trusted)" if m.trusted else "sandboxed (its own OS process)",
                "usage": _usage(m)}
        console.print(_pairs(rows))
        console.print(caps_table(m.caps(), m.trusted))
        return
    try:
        app = find_app(name)
    except LlmasosError as exc:
        fail(str(exc))
    rows = {"name": app.name, "version": app.version, "description": app.description,
            "source": app.source or ("builtin" if name in builtin_names() else ""), "usage": app.usage(),
            "runs": "sandboxed (its own OS process)" if app.sandbox else "in the kernel"}
    console.print(_pairs(rows))
    console.print(caps_table({"tools": list(app.tools), "memory": list(app.memory), "can_spawn": app.can_spawn,
                              "max_children": app.max_children, "signal": app.signal, "see_args": app.see_args,
                              "token_budget": app.token_budget, "syscall_budget": app.syscall_budget,
                              "time_budget": app.time_budget, "model_time_budget": app.model_time_budget},
                             not app.sandbox))


@apps.command()
def install(
    source: Annotated[str, typer.Argument(help="A package folder, a wheel, a requirement (name==1.0), or an "
                                               "app name from the index")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept the capabilities without asking")] = False,
    index: IndexOpt = None,
) -> None:
    """Install an app package (pip, into this environment) once you accept the capabilities it asks for.

    Its wheel is built or downloaded first and its manifests read from it (nothing of it runs); each app's
    requested capabilities are shown, and you are asked. Refusing installs nothing. --yes accepts.
    """
    from llmasos.apps import index as idx
    from llmasos.apps import store

    spec = source
    if not Path(source).expanduser().exists() and index is not None:
        try:
            entry = idx.load(index).get(source)
        except LlmasosError as exc:
            fail(str(exc))
        if entry is not None:
            spec = entry.source
    console = Console()
    try:
        with store.prepare(spec) as package:
            console.print(f"package [bold]{package.name}[/] {package.version}: {len(package.apps)} app(s)")
            for m in package.apps:
                console.print(f"\n[bold]{m.name}[/] {m.version}: {m.description}")
                console.print(caps_table(m.caps(), m.trusted))
            if not yes and not typer.confirm("Install and enable with these capabilities?", default=False):
                typer.echo("not installed: nothing was changed", err=True)
                raise typer.Exit(1)
            store.install(package)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"installed {package.name} {package.version}; enabled: "
               f"{', '.join(m.name for m in package.apps)}")


@apps.command()
def remove(name: Annotated[str, typer.Argument(help="An installed app's name")]) -> None:
    """Uninstall the package that provides an installed app (pip), and forget that it was enabled."""
    from llmasos.apps import store

    try:
        package, gone = store.remove(name)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"removed {package or name}" + (f" (apps: {', '.join(gone)})" if package else " (disabled)"))


@apps.command()
def new(
    name: Annotated[str, typer.Argument(help="The new app's name (also the package folder's)")],
    where: Annotated[Path, typer.Option("--dir", help="Where to create the folder")] = Path("."),
) -> None:
    """Write a new app package: pyproject (with its entry point), the app, a test on the FakeEngine, a README."""
    from llmasos.apps.scaffold import new as scaffold

    try:
        root = scaffold(name, where)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"created {root}\n  cd {root} && pip install -e '.[test]' && pytest -q\n"
               f"  llmasos apps install {root}")


@apps.command()
def search(
    term: Annotated[str, typer.Argument(help="Words to look for in names and descriptions")] = "",
    index: IndexOpt = None,
) -> None:
    """Search an app index (a JSON file works offline) for packages to install."""
    from llmasos.apps import index as idx

    try:
        found = idx.load(index)
    except LlmasosError as exc:
        fail(str(exc))
    table = Table("APP", "VERSION", "DESCRIPTION", "SOURCE", "ASKS FOR", title_justify="left")
    for e in found.search(term):
        table.add_row(e.name, e.version, e.description, e.source, _asks(e.caps))
    Console().print(table)
    for problem in found.problems:
        typer.echo(f"llmasos: skipped {problem}", err=True)


def caps_table(caps: dict[str, Any], trusted: bool) -> Table:
    """The capabilities an app asks for, one row each, the dangerous ones said plainly."""
    table = Table("CAPABILITY", "ASKS FOR", title_justify="left")
    for key, value in caps.items():
        table.add_row(key, _value(value))
    table.add_row("runs", "IN THE KERNEL'S PROCESS (trusted)" if trusted else "sandboxed, in its own OS process")
    return table


def _usage(manifest: Any) -> str:
    try:
        return manifest.app(source="").usage()
    except LlmasosError as exc:
        return f"(unreadable: {exc})"


def _asks(caps: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in caps.items() if v not in (None, False, [], ()))[:200]


def _value(value: Any) -> str:
    if value in (None, [], ()):
        return "-" if value is not None else "no limit"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _pairs(rows: dict[str, str]) -> Table:
    table = Table(show_header=False, box=None)
    for k, v in rows.items():
        table.add_row(k, v)
    return table
