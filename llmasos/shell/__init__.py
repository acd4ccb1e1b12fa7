"""The llmasos shell: a REPL to spawn, watch and kill agent processes.

``llmasos shell`` boots a kernel in this process (or connects to a daemon) and runs ``Shell`` over a
``KernelClient``. Modules: client (the kernel interface), commands (table and parsing), builtins (plain
commands), attach (run, attach, logs -f, strace), top, repl (the prompt loop).
"""

from __future__ import annotations

import sys
from typing import Any

from llmasos.shell.client import KernelClient, LocalClient, NotAvailable, connect
from llmasos.shell.repl import Shell

__all__ = ["KernelClient", "LocalClient", "NotAvailable", "Shell", "connect", "open_shell"]

BANNER = ("[bold]llmasos shell[/] · model [bold]{model}[/] · policy {policy} · kernel {where}\n"
          "[dim]Type [bold]help[/bold]. Try: spawn chat · attach 1 (Ctrl-] detaches) · ps · kill 1. "
          "Tab completes; Ctrl-D exits.[/]")


async def open_shell(*, engine: Any = None, policy: str = "fifo", url: str | None = None) -> None:
    """Boot a kernel on engine (None: the default model) and run the shell on it; or connect to url."""
    from rich.console import Console

    from llmasos.kernel import Kernel, KernelConfig, llmasos_home

    if url is not None:
        client = connect(url)
        stats = await client.stats()
        await Shell(client, history=llmasos_home() / "shell_history", banner=_banner(stats.engine, stats.policy, url)).run()
        return
    config = KernelConfig(engine=engine, policy=policy)
    name = getattr(engine, "name", None) or engine or "smollm2-135m"
    console = Console(stderr=True, highlight=False)
    kernel = Kernel(config)
    if sys.stderr.isatty():
        with console.status(f"loading model {name}… (the first run converts it, ~30 s)"):
            await kernel.boot()
    else:
        console.print(f"loading model {name}…")
        await kernel.boot()
    try:
        await Shell(LocalClient(kernel), history=config.home / "shell_history",
                    banner=_banner(getattr(kernel.engine, "name", name), kernel.policy, "in this process")).run()
    finally:
        await kernel.shutdown()


def _banner(model: str, policy: str, where: str) -> str:
    from rich.markup import escape

    return BANNER.format(model=escape(str(model)), policy=escape(policy), where=escape(where))
