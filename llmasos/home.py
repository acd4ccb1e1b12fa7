"""Where llmasos keeps its files: ``$LLMASOS_HOME``, or ``~/.llmasos``.

Rule: the one definition of the home directory, importable from every layer (it imports nothing of
llmasos): the database, the converted models, the native library, the API token, the shell's history
and the processes' tool jails all live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def llmasos_home() -> Path:
    """Where llmasos keeps its database, models, history and tool jails ($LLMASOS_HOME or ~/.llmasos)."""
    return Path(os.environ.get("LLMASOS_HOME") or Path.home() / ".llmasos").expanduser()
