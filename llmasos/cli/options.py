"""What every `llmasos` command shares: its options, defined once, and how it reports a user's error.

Rule: an option a user types (``--model``, ``--policy``, ``--url``, ``--prio``) has one definition here,
with one help text; an error the user can fix prints as one line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer

from llmasos.client.wire import DEFAULT_URL
from llmasos.errors import LlmasosError

T = TypeVar("T")

ModelOpt = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="Model name or path (default: smollm2-135m); openai:URL#MODEL for a model on an "
    "OpenAI-compatible server (key in $OPENAI_API_KEY), or an engine .toml file; 'fake' for the scripted test engine. "
    "Repeat as NAME=SPEC to load several (a bare SPEC is the default model)")]
PolicyOpt = Annotated[str | None, typer.Option(
    "--policy", help="Scheduling policy: fifo, rr, priority, fair (default: the config file's, else fifo)")]
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", help="Config file (default: ./llmasos.toml if there is one): models, [kernel] settings, boot "
    "apps; --model and --policy override it (docs/config.md)")]
UrlOpt = Annotated[str, typer.Option("--url", envvar="LLMASOS_URL", help="The daemon's URL ($LLMASOS_URL)")]
PrioOpt = Annotated[int | None, typer.Option(
    "--prio", help="Priority, a nice value: lower runs first under the priority policy")]
PidArg = Annotated[int, typer.Argument(help="Process id")]

__all__ = ["ConfigOpt", "DEFAULT_URL", "ModelOpt", "PidArg", "PolicyOpt", "PrioOpt", "UrlOpt", "fail", "run_async", "split_args",
           "write_chunk"]


def fail(message: str) -> NoReturn:
    """Print a user-facing error and exit 2."""
    typer.echo(f"llmasos: {message}", err=True)
    raise typer.Exit(2)


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """anyio.run(fn, *args) on asyncio; a user-facing error exits 2 with one line, Ctrl-C exits 130."""
    try:
        return anyio.run(fn, *args, backend="asyncio")
    except LlmasosError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def split_args(extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """An app's words: --key=value become keyword arguments (key-with-dashes is key_with_dashes)."""
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for item in extra:
        if item.startswith("--") and "=" in item:
            key, _, value = item[2:].partition("=")
            kwargs[key.replace("-", "_")] = value
        else:
            args.append(item)
    return args, kwargs


def write_chunk(stream: str, text: str) -> None:
    """A process's output, as it came: its stderr to our stderr, the rest to stdout."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()
