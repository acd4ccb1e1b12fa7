"""The process record and the per-process streams (mailbox, stdin, stdout).

Rule: all of a process's state lives in one slotted ``Process``; streams are created on first use so
that an idle process costs a few kilobytes.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from llmasos.apps.app import App
    from llmasos.engine.base import Sequence


class ProcState(enum.Enum):
    READY = "ready"  # spawned, not yet run
    RUNNING = "running"  # executing app code
    WAITING = "waiting"  # blocked in a syscall; Process.waiting_on says on what
    EXITED = "exited"  # main returned (or called exit)
    KILLED = "killed"  # killed by a user or a parent
    CRASHED = "crashed"  # main raised; the traceback is kept
    LOST = "lost"  # restored after a crash, but its app could not be found


LIVE = frozenset({ProcState.READY, ProcState.RUNNING, ProcState.WAITING})


@dataclass(slots=True)
class Counters:
    """Mutable usage counters (the frozen ``syscalls.types.Usage`` is their snapshot)."""

    syscalls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_time: float = 0.0
    syscall_time: float = 0.0


class Inbox:
    """An unbounded-by-design FIFO with one waiting reader: a mailbox or a stdin."""

    __slots__ = ("items", "_ready", "closed")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self._ready: anyio.Event | None = None
        self.closed = False

    def put(self, item: Any) -> None:
        self.items.append(item)
        if self._ready is not None:
            self._ready.set()

    def close(self) -> None:
        self.closed = True
        if self._ready is not None:
            self._ready.set()

    async def get(self) -> Any:
        """The next item; None once closed and drained."""
        while not self.items:
            if self.closed:
                return None
            self._ready = anyio.Event()
            await self._ready.wait()  # cancellation leaves the queue untouched
        self._ready = None
        return self.items.popleft()


class Output:
    """A process's stdout/stderr: a bounded log of chunks plus live followers."""

    __slots__ = ("chunks", "written", "followers")

    def __init__(self, keep: int) -> None:
        self.chunks: deque[tuple[str, str]] = deque(maxlen=keep)  # (stream, text)
        self.written = 0  # chunks ever written, kept or not
        self.followers: list[anyio.abc.ObjectSendStream] = []

    def write(self, stream: str, text: str) -> None:
        self.chunks.append((stream, text))
        self.written += 1
        for follower in list(self.followers):
            try:
                follower.send_nowait((stream, text))
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                # Invariant: a slow or gone follower is dropped, never blocks the writer.
                self.followers.remove(follower)
                follower.close()

    def close(self) -> None:
        for follower in self.followers:
            follower.close()
        self.followers.clear()


@dataclass(eq=False, slots=True)
class Process:
    """A running (or ended, not yet reaped) app."""

    pid: int
    app: App
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parent: int  # 0: the root user (shell, CLI, HTTP)
    priority: int  # nice value: lower runs first under the priority policy
    caps: Any  # kernel.caps.Caps
    state: ProcState = ProcState.READY
    waiting_on: str | None = None  # llm, tool, recv, sleep, child, stdin
    model: str | None = None  # the model its generate and chat calls use when they name none
    usage: Counters = field(default_factory=Counters)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    exit_value: Any = None
    error: str | None = None  # traceback when crashed, reason when killed or lost
    killed: bool = False  # kill asked; the process unwinds at its next await
    notice: bool = False  # killed, or a write_error to report: its next syscall takes the slow path
    children: set[int] = field(default_factory=set)  # live children's pids
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    mailbox: Inbox | None = None  # created on first send
    stdin: Inbox | None = None  # created on first read or write to it
    output: Output | None = None  # created on first write or follow
    trace: deque[Any] | None = None  # recent TraceEvents, created on first syscall
    seqs: set[Sequence] = field(default_factory=set)  # live sequences in the engine
    restored: bool = False  # re-run after a kernel crash
    face: str | None = None  # a face's request process (kernel.session): it runs in the face's task
    journaled: bool = True  # False: the root process (pid 0), whose calls are never replayed
    write_error: Any = None  # a queued database write of this process failed: raised at its next syscall
    sandbox: Any = None  # a sandboxed app's child OS process (kernel/sandbox.py: Child), once started
    # -- budgets (kernel/budget.py): the parts of its budgets that are spoken for
    reserved: int = 0  # tokens held by its running generates (prompt + max_tokens, less what was charged)
    lent_tokens: int = 0  # tokens carved out for its children: a live one's grant, an ended one's use
    lent_time: float = 0.0  # model seconds carved out for its children, likewise
    lender: Process | None = None  # the parent its budgets were carved from (kept when root adopts it)
    deadline: float | None = None  # anyio.current_time() when its time_budget runs out

    @property
    def alive(self) -> bool:
        return self.state in LIVE

    def get_mailbox(self) -> Inbox:
        if self.mailbox is None:
            self.mailbox = Inbox()
        return self.mailbox

    def get_stdin(self) -> Inbox:
        if self.stdin is None:
            self.stdin = Inbox()
        return self.stdin

    def get_output(self, keep: int) -> Output:
        if self.output is None:
            self.output = Output(keep)
        return self.output
