"""`llmasos mcp`: boot a kernel and serve it to an MCP client (a desktop assistant, an IDE) over stdio.

Rule: stdout carries only the MCP protocol (the face is llmasos/api/mcp.py); whatever llmasos says
goes to stderr. The kernel is booted through the client, as every CLI command does.
"""

from __future__ import annotations

import os

from llmasos.cli.options import ModelOpt, PolicyOpt, run_async


def mcp(model: ModelOpt = None, policy: PolicyOpt = "fifo") -> None:
    """Serve this kernel's tools, apps (llmasos_run_app) and processes (llmasos_ps) over MCP on stdio.

    Register it in an MCP client as the command `llmasos mcp` (add --model NAME to pick the model).
    """
    from llmasos.api.mcp import run_stdio
    from llmasos.client.local import LocalClient, kernel_config

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    async def main() -> None:
        async with LocalClient.boot(kernel_config(model, policy)) as local:
            await run_stdio(local.kernel)

    run_async(main)
