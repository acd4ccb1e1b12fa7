"""The `llmasos` command: run an app, list apps and models, open the shell, serve the HTTP API,
drive a running daemon (ps, spawn, kill, logs, wait), and evaluate models (eval).

Rule: this module only assembles the command from local.py (no daemon needed), remote.py (against a
daemon, via --url) and one module per further command (eval.py); options are defined once in
options.py. Importing it loads no kernel, engine or torch: a command that boots a kernel loads one
when it runs.
"""

from __future__ import annotations

import os

import typer

from llmasos.cli import apps, console, finetune, local, mcp, models, remote, tools
from llmasos.cli import eval as eval_

__all__ = ["cli", "main"]

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}  # an app's own words and --key=value

cli = typer.Typer(
    name="llmasos", no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
    help="An operating system for LLM agents. With no command: open the shell.",
)
cli.callback(invoke_without_command=True)(local.root)
cli.command(context_settings=EXTRA_ARGS)(local.run)
cli.add_typer(apps.apps)
cli.add_typer(tools.tools)
cli.command()(local.shell)
cli.add_typer(models.app)
cli.command()(finetune.finetune)
cli.command()(local.serve)
cli.command()(console.console)
cli.command()(mcp.mcp)
cli.command()(remote.ps)
cli.command(context_settings=EXTRA_ARGS)(remote.spawn)
cli.command()(remote.kill)
cli.command()(remote.logs)
cli.command()(remote.wait)
cli.command("eval")(eval_.eval_cmd)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never hang on an unreachable hub
    cli()
