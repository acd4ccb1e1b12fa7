"""The journal's storage: journal entries, persisted mailbox rows, process rows, and the pid block.

Rule: storage only. This module knows how the kernel's journal is laid out in the database and
nothing of what an entry means: which syscalls are journaled, how they replay and which have effects
is declared on the syscall classes and decided by the kernel (``kernel/journal.py``). Everything
here takes and returns plain data: ``Entry`` records, codec JSON strings, and row tuples queued on
the Writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmasos.syscalls.errors import InvalidArguments

if TYPE_CHECKING:
    from llmasos.memory.receipt import Receipt
    from llmasos.memory.store import Store
    from llmasos.memory.writer import Row

STDIN = -1  # the sender of a mailbox row that is an unread stdin line


@dataclass(slots=True)  # (not frozen: one is made per journaled syscall, and frozen init costs ~1 us)
class Entry:
    """One journal row: the outcome of syscall number n of process pid."""

    pid: int
    n: int
    call: str  # the syscall's type name
    digest: str  # codec.digest of the call
    status: str  # intent, ok or error
    result: str | None = None  # codec JSON of the result, or the error message
    error_type: str | None = None  # module:qualname of the error raised
    span: int = 0  # positions taken by the syscalls made inside this one (a tool's, a chat's)

    def row(self, update: bool) -> Row:
        values = {"pid": self.pid, "n": self.n, "call": self.call, "digest": self.digest,
                  "status": self.status, "result": self.result, "error_type": self.error_type,
                  "span": self.span, "at": time.time()}
        return ("journal=" if update else "journal+", values)


class JournalStore:
    """The journal's rows on one Store: commit them, queue them, or queue the rows around them."""

    def __init__(self, store: Store, db_id: str, *, group: bool, max_args_size: int | None = None) -> None:
        self.store = store
        self.db_id = db_id  # part of every idempotency key: keys never repeat across databases
        self.group = group  # rows that may wait are posted for a group commit, not committed at once
        self.max_args_size = max_args_size  # characters of a process's stored args or of a mailbox row
        self.node: str | None = None  # a cluster node: the node id and lease epoch new process rows get
        self.epoch: int | None = None

    def key(self, pid: int, n: int) -> str:
        """The idempotency key of syscall n of pid: the same when the call is re-issued after a crash."""
        return f"{self.db_id}-{pid}-{n}"

    async def commit(self, entry: Entry, *, update: bool, taken: int | None = None,
                     alone: bool = False) -> None:
        """Commit entry (and delete the mailbox row its call took) before returning.

        alone: no other process could share the commit, so it is made at once on this thread when
        the writer can; otherwise the writer's task groups it with other processes' entries.
        """
        rows = _with_taken(entry.row(update), taken)
        if not (alone and self.store.w.write_now(rows)):
            await self.store.w.run(rows=rows)

    def post(self, entry: Entry, *, update: bool, taken: int | None = None, owner: int | None = None) -> None:
        """Queue entry for the next group commit; a failure is reported to the writer's on_error."""
        self.store.w.post(rows=_with_taken(entry.row(update), taken), owner=owner)

    def post_mail(self, row_id: int, pid: int, sender: int, body: str, *, owner: int | None) -> Receipt:
        """Persist a message (or, from STDIN, a stdin line) until the call that takes it deletes it.

        owner: the pid that sent or wrote it, told if the write fails and nobody awaits the receipt."""
        return self.store.w.post(rows=[("mailbox+", {"id": row_id, "pid": pid, "sender": sender,
                                                     "body": body})], urgent=not self.group, owner=owner)

    def post_process(self, row: dict[str, Any]) -> Receipt:
        """Queue a new process's row; its spawner (row's parent) is told if the write fails and nobody
        awaits the receipt."""
        row["node"], row["node_epoch"] = self.node, self.epoch
        return self.store.post_process(row, urgent=not self.group)

    def check_size(self, what: str, size: int) -> None:
        """InvalidArguments if what (size characters of codec JSON) is over the arguments limit."""
        limit = self.max_args_size
        if limit is not None and size > limit:
            raise InvalidArguments(f"{what} takes {size:,} characters stored, over the limit of {limit:,} "
                                   "(KernelConfig.max_args_size); pass less, or a memory key that holds it")

    def post_process_end(self, pid: int, values: dict[str, Any]) -> None:
        self.store.post_process_end(pid, values, urgent=not self.group)

    def post_process_priority(self, pid: int, priority: int) -> None:
        self.store.post_process_priority(pid, priority, urgent=not self.group)


def _with_taken(row: Row, taken: int | None) -> list[Row]:
    # Invariant: a message (stdin line) leaves the mailbox table in the commit of the call that took it.
    return [row] if taken is None else [row, ("mailbox-", {"id": taken})]


class PidAllocator:
    """Pids from a block reserved in the database: a pid is never handed out twice, across restarts.

    A clean shutdown hands the block's unused pids back (``release``), so the next start goes on at the
    next pid; after a crash the next start begins past the reserved block (at most ``block`` skipped).
    """

    def __init__(self, store: Store, start: int, block: int) -> None:
        self.store, self.next, self.block = store, start, block
        self.limit = start + block

    def __iter__(self) -> PidAllocator:
        return self

    def __next__(self) -> int:
        pid = self.next
        self.next += 1
        if self.next + self.block // 2 > self.limit:
            # Invariant: the new limit is queued before any row that uses a pid from its block.
            self.limit += self.block
            self.store.post_meta("next_pid", str(self.limit))
        return pid

    def release(self) -> None:
        """Queue ``next_pid`` = the next unused pid: the unused rest of the block goes back.

        Invariant: called once no pid can be handed out any more (the kernel has stopped spawning), so
        every pid given out, and every row keyed by one, stays below the stored ``next_pid``.
        """
        self.limit = self.next
        self.store.post_meta("next_pid", str(self.next))
