"""`python -m llmasos.cli`: the `llmasos` command."""

from __future__ import annotations

from llmasos.cli import main

main()
