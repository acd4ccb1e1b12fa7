"""Where llmasos keeps its files: ``$LLMASOS_HOME``, else ``~/.llmasos``.

Rule: every layer may import this module (the kernel for its database and jails, clients for the API
token and the shell's history), so it imports nothing of llmasos.
"""

from __future__ import annotations

import os
from pathlib import Path


def llmasos_home() -> Path:
    """Where llmasos keeps its database, model cache, history, API token and tool jails ($LLMASOS_HOME)."""
    return Path(os.environ.get("LLMASOS_HOME") or Path.home() / ".llmasos").expanduser()
