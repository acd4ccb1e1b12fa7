"""The memory manager: SQLite (or any SQLAlchemy database) behind the kernel.

It keeps the process table, each process's context, namespaced key-value memory, long-term notes
with full-text search, and the syscall journal that lets the kernel be killed at any moment and
resume every process where it was (see ``journal.py`` for the exact guarantee).

Names are imported lazily, so ``llmasos.memory.keys`` (what tools read) costs no SQLAlchemy import.
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "MemoryManager": "llmasos.memory.manager",
    "current_idempotency_key": "llmasos.memory.keys",
    **{name: "llmasos.memory.errors" for name in (
        "DatabaseCorrupt", "DatabaseFull", "DatabaseLocked", "Fenced", "JournalError", "MemoryStoreError",
        "SchemaTooNew")},
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'llmasos.memory' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
