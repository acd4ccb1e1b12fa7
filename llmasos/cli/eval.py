"""`llmasos eval`: evaluate one or more models on perplexity, QA, tool-calling and agent tasks.

Rule: the command reads and checks every evaluation file first (a typo fails before a model loads),
then, per model, boots a kernel (or, with --url, uses the daemon's) and hands the tasks to
``llmasos.toolchain.eval``, which runs each item as a process through the client. It prints a table,
and writes the JSON report and the figure when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmasos.cli.options import fail, run_async
from llmasos.client.records import KernelClient
from llmasos.errors import LlmasosError
from llmasos.toolchain.eval import report as rep
from llmasos.toolchain.eval.runner import ModelReport, Options, run_model
from llmasos.toolchain.eval.sets import KINDS, Task, load_task, suite_tasks

def eval_cmd(
    models: Annotated[list[str] | None, typer.Argument(
        help="Models to compare, each evaluated in turn (default: smollm2-135m); none with --url")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="A shipped suite of tasks: default")] = None,
    perplexity: Annotated[Path | None, typer.Option("--perplexity", help="A text file: token perplexity")] = None,
    qa: Annotated[Path | None, typer.Option("--qa", help="JSONL of {question, answers}: exact, contains, BLEU")] = None,
    tools: Annotated[Path | None, typer.Option("--tools", help="JSONL of {question, tool}: tool-call rates")] = None,
    agent: Annotated[Path | None, typer.Option("--agent", help="JSONL of {question, answer}: run --app on each")] = None,
    app: Annotated[str, typer.Option("--app", help="The app --agent runs, the question as its argument")] = "react",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many items per task")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=4096,
                                             help="Items running at once (they batch)")] = 32,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="Reply length of each item")] = None,
    free: Annotated[bool, typer.Option("--free", help="Agent items generate without the tool-call grammar "
                                       "(the app's constrained=False; react has it): what the grammar buys")] = False,
    no_check: Annotated[bool, typer.Option(
        "--no-check", help="Agent items run without the app's check of each call against the question "
        "(react's check=False): what it buys")] = False,
    window: Annotated[int | None, typer.Option("--window", min=2, help="Perplexity: tokens per window")] = None,
    stride: Annotated[int | None, typer.Option("--stride", min=1, help="Perplexity: tokens scored per window")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", dir_okay=False, help="Write the JSON report here")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", dir_okay=False, help="Draw the figure here (.png)")] = None,
    url: Annotated[str | None, typer.Option("--url", envvar="LLMASOS_URL",
                                            help="Evaluate the model of the daemon at this URL ($LLMASOS_URL)")] = None,
) -> None:
    """Evaluate models: each task's items run as kernel processes, batched; prints a table per model.

    Give a suite (--suite default) and/or task files; a file given for a
    task replaces the suite's. Examples: `llmasos eval smollm2-135m --suite default --plot out.png`,
    `llmasos eval --url http://127.0.0.1:8765 --qa my.jsonl --json out.json`.
    """
    try:
        tasks = _tasks(suite, {"perplexity": perplexity, "qa": qa, "tools": tools, "agent": agent}, limit)
    except LlmasosError as exc:
        fail(str(exc))
    if url and models:
        fail("with --url the daemon's own model is evaluated; drop the model names (or evaluate them "
             "without --url, each in a kernel of its own)")
    if window is not None and stride is not None and stride >= window:
        fail(f"--stride ({stride}) must be smaller than --window ({window})")
    if not url:
        _check_app(app, tasks)
    for flag, given in (("--free", free), ("--no-check", no_check)):
        if given and not any(t.kind == "agent" for t in tasks):
            fail(f"{flag} applies to agent items; give --agent FILE (or a suite with agent items)")
    options = Options(app=app, concurrency=concurrency, max_tokens=max_tokens, window=window, stride=stride,
                      free=free, check=not no_check)
    reports = run_async(_evaluate, tasks, list(models or [None]) if not url else [None], options, url)
    Console(highlight=False).print(rep.table(reports))
    try:
        if json_out is not None:
            rep.write_json(reports, json_out, suite=suite, tasks=[{"kind": t.kind, "source": t.source,
                                                                   "items": len(t.items)} for t in tasks])
            typer.echo(f"report: {json_out}", err=True)
        if plot_out is not None:
            rep.plot(reports, plot_out)
            typer.echo(f"figure: {plot_out}", err=True)
    except LlmasosError as exc:
        fail(str(exc))


def _tasks(suite: str | None, files: dict[str, Path | None], limit: int | None) -> list[Task]:
    given = {kind: load_task(kind, path, limit) for kind, path in files.items() if path is not None}
    shipped = {t.kind: t for t in suite_tasks(suite, tuple(k for k in KINDS if k not in given), limit)} if suite else {}
    tasks = [given.get(kind) or shipped.get(kind) for kind in KINDS]
    if not any(tasks):
        raise LlmasosError("nothing to evaluate: give --suite default, or at least one of --perplexity FILE, "
                           "--qa FILE, --tools FILE, --agent FILE")
    return [t for t in tasks if t is not None]


def _check_app(app: str, tasks: list[Task]) -> None:
    """An unknown --app fails now, before a model loads (a daemon's spawn checks it on its side)."""
    if not any(t.kind == "agent" for t in tasks):
        return
    from llmasos.client.local import check_app

    try:
        check_app(app, ["?"], {})
    except LlmasosError as exc:
        fail(f"--app {app}: {exc}")


async def _evaluate(tasks: list[Task], models: list[str | None], options: Options,
                    url: str | None) -> list[ModelReport]:
    reports = []
    for model in models:
        if url:
            from llmasos.client.remote import RemoteClient

            async with RemoteClient(url) as remote:
                reports.append(await _run(remote, tasks, options))
            continue
        from llmasos.client.local import LocalClient, kernel_config

        typer.echo(f"loading {model or 'the default model'} ...", err=True)
        config = kernel_config(model)
        config.durable = False  # an evaluation cut short leaves nothing for the next boot to restart
        async with LocalClient.boot(config) as local:
            reports.append(await _run(local, tasks, options))
    return reports


async def _run(client: KernelClient, tasks: list[Task], options: Options) -> ModelReport:
    with _progress(tasks) as advance:
        return await run_model(client, tasks, options, advance)


class _progress:
    """A rich progress bar per task on stderr; the context value is the runner's ``advance``."""

    def __init__(self, tasks: list[Task]) -> None:
        self.bar = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.ids = {t.kind: self.bar.add_task(t.kind, total=len(t.items)) for t in tasks}

    def __enter__(self) -> Callable[[str], None]:
        self.bar.start()
        return lambda kind: self.bar.advance(self.ids[kind])

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
