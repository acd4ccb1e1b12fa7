"""What the database holds about the processes a stopped kernel left alive: a recovery plan.

Rule: storage only. ``plan`` reads, in a few queries, everything the kernel needs to restart the
processes the database shows alive (their rows, journals, unread mail, the children they made before
the stop) and returns it as plain data; which processes to restart, with which app and caps, and how
their journals replay, is the kernel's decision (``kernel/recovery.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmasos.memory.store import Store


@dataclass(slots=True)
class RecoveryPlan:
    """The database's view of the processes alive when the kernel last stopped."""

    rows: list[Any] = field(default_factory=list)  # their process rows, by pid (parents first)
    entries: dict[int, dict[int, Any]] = field(default_factory=dict)  # pid -> n -> journal row
    mail: dict[int, list[Any]] = field(default_factory=dict)  # pid -> unread mailbox rows, oldest first
    ended_children: list[Any] = field(default_factory=list)  # ended rows whose parent is in rows
    max_mailbox_id: int = 0


async def plan(store: Store, live: list[str], ended: list[str], *, pids: list[int] | None = None,
               node: str | None = None) -> RecoveryPlan:
    """Read the recovery plan: processes in the live states (those of pids, or run by a cluster node,
    when given), and what belongs to them."""
    rows = await store.processes(states=live, pids=pids, node=node)
    if not rows:
        return RecoveryPlan()
    pids = [r.pid for r in rows]
    return RecoveryPlan(
        rows=rows, entries=dict(await store.journal_for(pids)), mail=dict(await store.mailboxes(pids)),
        ended_children=await store.processes(states=ended, parents=sorted(pids)),
        max_mailbox_id=await store.max_mailbox_id(),
    )
