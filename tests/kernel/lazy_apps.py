"""An app for the lazy-model tests, found by spec after a kernel restart (tests/kernel/test_lazy_models.py)."""

from __future__ import annotations

from llmasos import App

chooser = App("lazy-chooser")


@chooser.main
async def _chooser(sys) -> list[str]:
    """The names the models syscall gave, returned once a message arrives (the kernel restarts between)."""
    names = [m.name for m in await sys.models()]
    await sys.recv()
    return names
