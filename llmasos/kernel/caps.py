"""Capabilities: what a process may do, checked at the syscall chokepoint.

Rule: a child never holds more than its parent; the root (shell, CLI, HTTP user) holds everything.
This first version grants and checks permissively; the capabilities work (tools, memory namespaces,
spawn limits, budgets) fills in ``grant`` and ``check`` without changing their signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmasos.apps.app import App
    from llmasos.kernel.proc import Process
    from llmasos.syscalls.calls import Syscall


@dataclass(frozen=True, slots=True)
class Caps:
    """The rights one process holds. None means unlimited."""

    tools: frozenset[str] | None = None  # tool names it may call
    memory: frozenset[str] | None = None  # memory namespaces beyond its own
    can_spawn: bool = True
    max_children: int | None = None
    token_budget: int | None = None  # prompt + completion tokens over its life
    syscall_budget: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tools": sorted(self.tools) if self.tools is not None else "*",
            "memory": sorted(self.memory) if self.memory is not None else "*",
            "can_spawn": self.can_spawn,
            "max_children": self.max_children,
            "token_budget": self.token_budget,
            "syscall_budget": self.syscall_budget,
        }


ROOT = Caps()


def grant(parent: Caps, app: App, asked: dict[str, Any] | None = None) -> Caps:
    """The caps a new process running app gets from a parent holding parent."""
    return parent


def check(proc: Process, call: Syscall) -> None:
    """Raise PermissionDenied or QuotaExceeded when proc may not make call."""
