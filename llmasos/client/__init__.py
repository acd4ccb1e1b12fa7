"""The client every face uses: records and the ``KernelClient`` protocol, and its two implementations.

Modules: records (the protocol and what it returns), local (``LocalClient`` over a kernel in this
process, and how to boot one), remote (``RemoteClient`` over a daemon's HTTP API), wire (errors over
HTTP, the API token), tables (the listings both the shell and the CLI print).

Rule: importing this package (or ``llmasos.client.remote``) loads no kernel, engine, memory or torch;
only ``llmasos.client.local`` reaches into the kernel, and it never imports a face (shell, cli, api).
"""

from __future__ import annotations

from llmasos.client.records import AppRow, EngineStats, KernelClient, MemView, ModelStats, NotAvailable, Row

__all__ = ["AppRow", "EngineStats", "KernelClient", "MemView", "ModelStats", "NotAvailable", "Row"]

