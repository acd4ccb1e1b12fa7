"""The llmasos shell: a REPL to spawn, watch and kill agent processes.

``llmasos shell`` boots a kernel in this process (or connects to a daemon) and runs ``Shell`` over a
``KernelClient`` (llmasos.client). Modules: commands (table and parsing), builtins (plain commands),
attach (run, attach, logs -f, strace), top, repl (the prompt loop).

Rule: the shell reaches a kernel only through llmasos.client; it never imports the kernel itself.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path

from llmasos.client import KernelClient
from llmasos.client.local import LocalClient, deployment
from llmasos.client.remote import RemoteClient
from llmasos.home import llmasos_home
from llmasos.shell.repl import Shell

__all__ = ["Shell", "open_shell"]

BANNER = ("[bold]llmasos shell[/] · model [bold]{model}[/] · policy {policy} · kernel {where}\n"
          "[dim]Type [bold]help[/bold]. Try: spawn chat · attach 1 (Ctrl-] detaches) · ps · kill 1. "
          "Tab completes; Ctrl-D exits.[/]")


async def open_shell(*, model: str | list[str] | None = None, policy: str | None = None, url: str | None = None,
                     config: str | None = None) -> None:
    """Boot a kernel on model (None: the default model; 'fake': the test engine; several: NAME=SPEC) or on
    a config file's deployment (config, else ./llmasos.toml) and run the shell on it; or connect to the
    daemon at url."""
    from rich.console import Console

    if url is not None:
        async with RemoteClient(url) as remote:
            await _run(remote, llmasos_home(), url)
        return
    deployed = deployment(config, model, policy)
    cfg = deployed.config
    name = ", ".join(cfg.models) if cfg.models else ", ".join(model) if isinstance(model, list) else model
    name = name or "smollm2-135m"
    console = Console(stderr=True, highlight=False)
    async with AsyncExitStack() as stack:
        booting = LocalClient.boot(cfg, deployed.apps)
        if sys.stderr.isatty():
            with console.status(f"loading model {name}… (the first run converts it, ~30 s)"):
                local = await stack.enter_async_context(booting)
        else:
            console.print(f"loading model {name}…")
            local = await stack.enter_async_context(booting)
        await _run(local, local.home, "in this process")


async def _run(client: KernelClient, home: Path, where: str) -> None:
    from rich.markup import escape

    stats = await client.stats()
    banner = BANNER.format(model=escape(stats.engine), policy=escape(stats.policy), where=escape(where))
    await Shell(client, history=home / "shell_history", banner=banner).run()
