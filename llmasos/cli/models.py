"""`llmasos models`: the model library (list, info, add, convert, remove, pull, build).

Rule: `llmasos models` with no subcommand lists, as it always did. Each subcommand is a thin wrapper over
llmasos.toolchain.library, imported when the command runs (importing the CLI loads no torch); list and
info also work against a daemon with --url (its /v1/models), the others change this machine's
$LLMASOS_HOME and have no --url.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from llmasos.cli.options import fail, run_async
from llmasos.client.tables import models_table, table
from llmasos.errors import LlmasosError

app = typer.Typer(name="models", add_completion=False, pretty_exceptions_enable=False,
                  help="The model library: list, info, add, convert, remove, pull, build. With no command: list.")

RemoteUrl = Annotated[str | None, typer.Option(
    "--url", help="Ask the daemon at this URL (its /v1/models) instead of this machine")]
NameArg = Annotated[str, typer.Argument(help="A library name (letters, digits, . _ -)")]


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context, url: RemoteUrl = None) -> None:
    """With no command: list the models (as `llmasos models list`)."""
    if ctx.invoked_subcommand is None:
        list_models(url)


@app.command("list")
def list_models(url: RemoteUrl = None) -> None:
    """Every model known here: built in, from installed packages, registered, converted, hub-cached;
    with size, context window, quantisation, licence, and what is on disk."""
    if url:
        Console().print(models_table(_remote_rows(url)))
        return
    from llmasos.toolchain import library

    try:
        rows = library.rows()
    except LlmasosError as exc:
        fail(str(exc))
    out = table("MODEL", "ORIGIN", "PARAMS", "CONTEXT", "QUANT", "LICENSE", "ON DISK")
    for r in rows:
        disk = _size(r.size) if r.cached else "converts on first use" if r.source.endswith(".gguf") else "missing"
        out.add_row(r.name, r.origin, r.params, str(r.context or ""), r.quant, r.license, disk)
    Console(width=max(120, Console().width)).print(out)
    typer.echo("`llmasos models info NAME` says where each comes from.", err=True)


@app.command()
def info(name: NameArg, url: RemoteUrl = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """What the library knows of NAME: where it comes from, where it loads from, size, adapter details."""
    if url:
        found = [r for r in _remote_rows(url) if r.name == name]
        if not found:
            fail(f"the daemon at {url} knows no model {name!r}; `llmasos models list --url {url}` lists them")
        data: dict[str, Any] = {"name": name, "description": found[0].description, "status": found[0].extra}
    else:
        from llmasos.toolchain import library

        try:
            data = library.details(name).as_dict()
        except LlmasosError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    out = table("FIELD", "VALUE")
    for key, value in data.items():
        if value not in (None, "", {}):
            out.add_row(key, _size(value) if key == "size" else
                        json.dumps(value, indent=1) if isinstance(value, dict) else str(value))
    Console().print(out)


@app.command()
def add(name: NameArg, path: Annotated[Path, typer.Argument(
        help="A transformers directory, a .gguf file, or a LoRA adapter directory")]) -> None:
    """Register a local model under NAME (nothing is copied; `convert` copies)."""
    from llmasos.toolchain import library

    try:
        card = library.add(name, path)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"added {card.name} -> {card.source}; try: llmasos run chat --model {card.name}")


@app.command()
def convert(src: Annotated[Path, typer.Argument(help="A .gguf file or a transformers directory")],
            name: Annotated[str | None, typer.Option("--name", help="Library name (default: from SRC)")] = None,
            ) -> None:
    """Copy a transformers directory, or dequantise a .gguf file, into $LLMASOS_HOME/models and register it."""
    from llmasos.toolchain import library

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("converting", total=None)

        def report(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total or None)

        try:
            card = library.convert(src, name, report)
        except LlmasosError as exc:
            bar.stop()
            fail(str(exc))
    typer.echo(f"converted {src} into {card.source} as {card.name}")


@app.command()
def remove(name: NameArg, keep_files: Annotated[bool, typer.Option(
        "--keep-files", help="Only forget the name; leave files llmasos made in place")] = False) -> None:
    """Forget NAME, and delete the copy llmasos made of it (never a folder you added). For a built-in
    model: delete its converted copy."""
    from llmasos.toolchain import library

    try:
        lines = library.remove(name, keep_files=keep_files)
    except LlmasosError as exc:
        fail(str(exc))
    for line in lines:
        typer.echo(line)


@app.command()
def pull(hub_id: Annotated[str, typer.Argument(help="A hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")]) -> None:
    """Download a model from the Hugging Face hub into its local cache; fails in 2 s when the hub is
    unreachable (offline: use `convert` or `add`)."""
    from llmasos.toolchain import library

    try:
        folder = library.pull(hub_id)
    except LlmasosError as exc:
        fail(str(exc))
    typer.echo(f"pulled {hub_id} into {folder}; try: llmasos run chat --model {hub_id}")


@app.command()
def build(name: Annotated[str, typer.Argument(help="What to build: smollm2-135m-tools")],
          force: Annotated[bool, typer.Option("--force", help="Delete a previous build and build again")] = False,
          base: Annotated[str | None, typer.Option(
              "--base", help="Train on this library model instead of the recipe's (e.g. a small test model)")] = None,
          max_steps: Annotated[int | None, typer.Option(
              "--max-steps", min=1, help="Stop training after this many steps (a quick, weaker build)")] = None,
          ) -> None:
    """Make NAME here from its recipe: generate its training data, fine-tune a LoRA adapter on this CPU
    (smollm2-135m-tools: about 15 minutes), register it. Run again: nothing to do, or resume after Ctrl-C."""
    import time

    from llmasos.toolchain import build as builder

    started = time.monotonic()

    def step(done: int, total: int, loss: float, _epoch: int) -> None:
        spent = time.monotonic() - started
        typer.echo(f"step {done}/{total}  loss {loss:.4f}  {spent:.0f} s", err=True)

    try:
        result = builder.build(name, force=force, base=base, max_steps=max_steps,
                               note=lambda msg: typer.echo(msg, err=True), on_step=step)
    except LlmasosError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted before training began; {name} is not registered (run the build again)")
    if result.interrupted:
        raise typer.Exit(130)
    if result.built:
        typer.echo(f"built {name}; react runs on it in a kernel that loads it: "
                   f"llmasos run react QUESTION --model {name}")


def _remote_rows(url: str) -> list[Any]:
    from llmasos.client.remote import RemoteClient

    async def ask() -> list[Any]:
        async with RemoteClient(url) as client:
            return await client.models()

    return run_async(ask)


def _size(size: int | None) -> str:
    if not size:
        return ""
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size} B"
