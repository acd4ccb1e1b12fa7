"""Durability: the syscall journal's semantics. Every result is committed before the process sees it.

Rule: the kernel owns what a journal entry means; memory/ only stores the rows (``memory/journal.py``).
``Kernel.syscall`` hands each journaled call (``Syscall.journaled``) to ``Journal.run``. A live call
runs its handler, and its result (or typed error) is committed at (pid, n) before it is returned; a
process restored after a crash gets, for each position its journal holds, the recorded result without
the handler running (``Syscall.replay == "result"``: no model call, no tool run, no sleep) or with it
running again (``"rerun"``: it rebuilds in-memory state, such as the output log). The first position the
journal lacks runs live. A call with an external effect (``Syscall.effect``) also commits its *intent*
before it runs; one that was in flight at the crash is re-issued with the same idempotency key.
Syscalls made inside another (a memory tool's, a chat's summary) take the next positions and are
journaled like any other; the enclosing call records how many positions they took (its ``span``), so a
replay of it skips them.

Guarantee: a journaled result never re-executes. A call in flight at the crash (intent recorded, no
result) is re-issued at least once, with the same key (``current_idempotency_key()``), so a tool that
honours the key takes effect exactly once. In ``group`` commit mode, results of calls without an
external effect are committed within ``group_commit_ms``; those lost in that window run again live.

``NoJournal`` is the same interface for a kernel without a database: calls just run.
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import json
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from llmasos.apps.registry import app_spec
from llmasos.kernel.errors import blame
from llmasos.kernel.recovery import FACE_SPEC
from llmasos.kernel.streams import JournaledStream, ReplayStream
from llmasos.memory import codec
from llmasos.memory.journal import STDIN, Entry, JournalStore
from llmasos.memory.keys import KEY as _KEY
from llmasos.memory.receipt import DONE, Receipt
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import ReplayMismatch, SyscallError
from llmasos.syscalls.types import Completion, ExitStatus, Message

if TYPE_CHECKING:
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process
    from llmasos.kernel.table import Handler

FRAME: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("llmasos_frame", default=None)
"""In a task running a journaled nesting syscall (``Syscall.nests``): [the highest position any syscall
made inside it took]."""


class Durability(Protocol):
    """What the kernel asks of its journal (``Journal``, or ``NoJournal`` without a database)."""

    async def run(self, kernel: Kernel, proc: Process, n: int, call: c.Syscall, handler: Handler) -> Any: ...
    def process_started(self, proc: Process) -> None: ...
    def process_row(self, pid: int) -> Receipt: ...
    def process_ended(self, proc: Process) -> None: ...
    def process_reniced(self, proc: Process) -> None: ...
    def message_sent(self, pid: int, msg: Message) -> Receipt: ...
    def stdin_written(self, pid: int, lines: list[str]) -> Receipt: ...


class NoJournal:
    """No database: calls run, nothing is recorded."""

    async def run(self, kernel: Kernel, proc: Process, n: int, call: c.Syscall, handler: Handler) -> Any:
        return await handler(kernel, proc, call)

    def process_started(self, proc: Process) -> None:
        pass

    def process_row(self, pid: int) -> Receipt:
        return DONE

    def process_ended(self, proc: Process) -> None:
        pass

    def process_reniced(self, proc: Process) -> None:
        pass

    def message_sent(self, pid: int, msg: Message) -> Receipt:
        return DONE

    def stdin_written(self, pid: int, lines: list[str]) -> Receipt:
        return DONE


class Journal:
    """The kernel's journal over the memory manager's rows."""

    def __init__(self, rows: JournalStore) -> None:
        self.rows = rows
        self.replay: dict[int, dict[int, Any]] = {}  # restored pid -> n -> journal row not yet replayed
        self.replay_end: dict[int, int] = {}  # restored pid -> its last journaled position
        self.spawned: dict[str, int] = {}  # key of a spawn in flight at the crash -> the pid it made
        self.ended: dict[int, ExitStatus] = {}  # children that ended in an earlier life, for waits
        self.restoring = False  # recovery is starting processes: their rows exist already
        self._spawn_key: str | None = None  # while a spawn handler runs: the key its child records
        self._messages: dict[int, tuple[Message, int, int]] = {}  # id(msg) -> (msg, row id, pid)
        self._msg_ids: Iterator[int] = itertools.count(1)
        self._shared_ids = False
        self._stdin: dict[int, deque[int]] = {}  # pid -> row ids of its unread stdin lines, in order
        self._rows: dict[int, Receipt] = {}  # pid -> the write of its process row, until taken or it ends
        self.live = 0  # processes started and not ended (whether a commit has anyone to share with)

    # -- the chokepoint's hook ---------------------------------------------------------------

    async def run(self, kernel: Kernel, proc: Process, n: int, call: c.Syscall, handler: Handler) -> Any:
        name = type(call).__name__
        digest = codec.digest(call)
        in_flight = False
        if proc.restored and proc.pid in self.replay:
            entry = self._next_entry(proc, n, name, digest)
            if entry is not None:
                if entry.status != "intent":
                    return await self._replayed(kernel, proc, n, call, entry, handler)
                in_flight = True  # started before the crash, outcome unknown: re-issue, same key
        effect = call.effect
        if effect and not in_flight:
            await self.rows.commit(Entry(proc.pid, n, name, digest, "intent"), update=False, alone=self._alone)
        recorded = effect or in_flight
        frame = [n]
        # Invariant: calls made inside a nesting call (a tool's) find its frame and widen its span.
        frame_token = FRAME.set(frame) if call.nests else None
        key_token = _KEY.set(self.rows.key(proc.pid, n))
        try:
            result = await self._execute(kernel, proc, call, handler)
        except Exception as exc:
            error = exc if isinstance(exc, SyscallError) else blame(call, exc)
            await self._commit(proc.pid, n, name, digest, frame[0] - n, recorded, effect, error=error)
            if error is exc:
                raise
            raise error from exc
        finally:
            _KEY.reset(key_token)
            if frame_token is not None:
                FRAME.reset(frame_token)
                outer = FRAME.get()
                if outer is not None and frame[0] > outer[0]:
                    outer[0] = frame[0]
        span = frame[0] - n
        if isinstance(call, c.Generate) and call.stream and not isinstance(result, Completion):
            return JournaledStream(
                result,
                lambda value: self._commit(proc.pid, n, name, digest, span, recorded, effect, value=value),
                lambda value: self.rows.post(self._entry(proc.pid, n, name, digest, span, value, None),
                                             update=recorded, owner=proc.pid))
        await self._commit(proc.pid, n, name, digest, span, recorded, effect, value=result)
        return result

    async def _execute(self, kernel: Kernel, proc: Process, call: c.Syscall, handler: Handler) -> Any:
        if isinstance(call, c.Spawn):
            key = _KEY.get()
            made = self.spawned.pop(key, None) if key is not None else None
            if made is not None:  # the child exists (and is restored on its own): do not spawn twice
                return made
            self._spawn_key = key
            try:
                return await handler(kernel, proc, call)
            finally:
                self._spawn_key = None
        if isinstance(call, c.Wait) and call.pid in self.ended and call.pid not in kernel.processes:
            return self.ended.pop(call.pid)
        return await handler(kernel, proc, call)

    @property
    def _alone(self) -> bool:
        return self.live <= 1  # nobody to share a commit with: commit at once on this thread

    async def _commit(self, pid: int, n: int, name: str, digest: str, span: int, update: bool, effect: bool,
                      *, value: Any = None, error: BaseException | None = None) -> None:
        entry = self._entry(pid, n, name, digest, span, value, error)
        taken = self._taken(pid, name, value) if error is None and name in _TAKES else None
        if self.rows.group and not effect:
            self.rows.post(entry, update=update, taken=taken, owner=pid)
        else:
            await self.rows.commit(entry, update=update, taken=taken, alone=self._alone)

    def _entry(self, pid: int, n: int, name: str, digest: str, span: int, value: Any,
               error: BaseException | None) -> Entry:
        if error is not None:
            cls = type(error)
            return Entry(pid, n, name, digest, "error", str(error), f"{cls.__module__}:{cls.__qualname__}", span)
        return Entry(pid, n, name, digest, "ok", codec.dumps(value, lenient=True), None, span)

    def _taken(self, pid: int, name: str, value: Any) -> int | None:
        """The mailbox row the call's result took from pid's mailbox or stdin, if any."""
        if name == "Recv" and isinstance(value, Message):
            taken = self._messages.pop(id(value), None)
            return taken[1] if taken is not None else None
        if name == "ReadLine" and isinstance(value, str):
            lines = self._stdin.get(pid)
            return lines.popleft() if lines else None  # stdin is read in order
        return None

    # -- replay ------------------------------------------------------------------------------

    def _next_entry(self, proc: Process, n: int, name: str, digest: str) -> Any:
        pending = self.replay[proc.pid]
        entry = pending.pop(n, None)
        if not pending:
            self.replay.pop(proc.pid, None)
        if entry is None:
            if n < self.replay_end.get(proc.pid, 0) and name != "Generate":
                # (a streamed generate is journaled when it ends, after the writes of its chunks)
                self.replay.pop(proc.pid, None)
                raise ReplayMismatch(
                    f"process {proc.pid} ({proc.app.name}) cannot resume: after the restart its syscall "
                    f"#{n} is {name}, but nothing was journaled at #{n} the first time. {_DETERMINISM}")
            return None
        if entry.call != name or entry.digest != digest:
            self.replay.pop(proc.pid, None)
            what = "the same syscall with different arguments" if entry.call == name else entry.call
            raise ReplayMismatch(
                f"process {proc.pid} ({proc.app.name}) cannot resume: after the restart its syscall #{n} "
                f"is {name}, but its journal recorded {what} at #{n}. {_DETERMINISM}")
        return entry

    async def _replayed(self, kernel: Kernel, proc: Process, n: int, call: c.Syscall, entry: Any,
                        handler: Handler) -> Any:
        span = getattr(entry, "span", 0) or 0
        if span:  # the syscalls made inside it are not made again: skip their positions
            proc.usage.syscalls = max(proc.usage.syscalls, n + span)
            pending = self.replay.get(proc.pid)
            if pending is not None:
                for inner in range(n + 1, n + span + 1):
                    pending.pop(inner, None)
                if not pending:
                    self.replay.pop(proc.pid, None)
        if entry.status == "error":
            raise _revive(entry.error_type, entry.result)
        value = codec.loads(entry.result)
        if call.replay == "rerun":
            await handler(kernel, proc, call)
        elif isinstance(value, dict) and "chunks" in value:  # a streamed generate
            _account(proc, value["completion"])
            return ReplayStream(value["chunks"], value["completion"])
        elif isinstance(value, Completion):
            _account(proc, value)
        return value

    # -- hooks the kernel calls --------------------------------------------------------------

    def process_started(self, proc: Process) -> None:
        """Queue the new process's row (recovery's own restarts have theirs already).

        InvalidArguments, and nothing queued, if its arguments cannot be stored (or are over
        ``KernelConfig.max_args_size``). ``process_row`` hands out the write's receipt.
        """
        if self.restoring:
            self.live += 1
            return
        args, kwargs = codec.dumps(proc.args), codec.dumps(proc.kwargs)
        self.rows.check_size(f"the arguments of {proc.app.name}", len(args) + len(kwargs))
        source = proc.app.source or ""
        spec = source if source.startswith(FACE_SPEC) else app_spec(proc.app)
        self.live += 1
        self._rows[proc.pid] = self.rows.post_process({
            "pid": proc.pid, "app": proc.app.name, "spec": spec, "args": args,
            "kwargs": kwargs, "state": proc.state.value, "priority": proc.priority,
            "parent": proc.parent, "caps": json.dumps(proc.caps.as_dict()), "usage": None,
            "exit_value": None, "error": None, "started": proc.started, "ended": None,
            "spawn_key": self._spawn_key,
        })
        self._spawn_key = None  # Invariant: a spawn handler starts exactly one process

    def process_row(self, pid: int) -> Receipt:
        """The write of pid's row queued when it started (await it: committed, or its error raised)."""
        return self._rows.pop(pid, DONE)

    def process_ended(self, proc: Process) -> None:
        """Queue how proc ended; it will not be restored, and its unread mail is dropped."""
        self.live -= 1
        u = proc.usage
        self.rows.post_process_end(proc.pid, {
            "state": proc.state.value, "ended": proc.ended,
            "exit_value": codec.dumps(proc.exit_value, lenient=True), "error": proc.error,
            "usage": json.dumps({
                "syscalls": u.syscalls, "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens, "model_time": u.model_time,
                "syscall_time": u.syscall_time}),
        })
        self.replay.pop(proc.pid, None)
        self._rows.pop(proc.pid, None)
        for key in [k for k, (_, _, pid) in self._messages.items() if pid == proc.pid]:
            del self._messages[key]
        self._stdin.pop(proc.pid, None)

    def process_reniced(self, proc: Process) -> None:
        """Queue proc's new priority: a restart resumes it with that one."""
        self.rows.post_process_priority(proc.pid, proc.priority)

    def message_sent(self, pid: int, msg: Message) -> Receipt:
        """Persist a message put in pid's mailbox until a recv takes it (InvalidArguments if it cannot be,
        or is over ``KernelConfig.max_args_size``); await the receipt to know it is committed."""
        body = codec.dumps(msg.body)  # before anything is queued: a body that cannot be stored is refused
        self.rows.check_size("a message", len(body))
        row_id = next(self._msg_ids)
        self._messages[id(msg)] = (msg, row_id, pid)
        return self.rows.post_mail(row_id, pid, msg.sender, body, owner=msg.sender or None)

    def adopt_message(self, pid: int, msg: Message, row_id: int) -> None:
        """A persisted unread message, put back in a restored mailbox."""
        self._messages[id(msg)] = (msg, row_id, pid)

    def stdin_written(self, pid: int, lines: list[str]) -> Receipt:
        """Persist lines put in pid's stdin until a readline takes each (mailbox rows from STDIN).

        InvalidArguments, and nothing queued, if they are over ``KernelConfig.max_args_size``."""
        bodies = [codec.dumps(line) for line in lines]
        self.rows.check_size("a write to stdin", sum(len(b) for b in bodies))
        unread = self._stdin.setdefault(pid, deque())
        receipts = []
        for body in bodies:
            row_id = next(self._msg_ids)
            unread.append(row_id)
            receipts.append(self.rows.post_mail(row_id, pid, STDIN, body, owner=None))  # by the root user
        return Receipt.join(receipts)

    def adopt_stdin(self, pid: int, row_id: int) -> None:
        """A persisted unread stdin line, put back in a restored stdin (in order)."""
        self._stdin.setdefault(pid, deque()).append(row_id)

    def start_message_ids(self, after: int) -> None:
        if not self._shared_ids:  # (a cluster node's ids come from blocks reserved for it)
            self._msg_ids = itertools.count(after + 1)

    def use_message_ids(self, ids: Iterator[int]) -> None:
        """Take mailbox row ids from ids (a cluster node's blocks: unique across nodes)."""
        self._msg_ids, self._shared_ids = ids, True


_TAKES = frozenset({"Recv", "ReadLine"})  # calls whose result takes a persisted mailbox row
_DETERMINISM = ("An app's code between syscalls must be deterministic (time, randomness and I/O go "
                "through syscalls) for the kernel to replay it; spawn it anew.")


def _account(proc: Process, completion: Completion | None) -> None:
    if completion is not None:
        proc.usage.prompt_tokens += completion.prompt_tokens
        proc.usage.completion_tokens += completion.completion_tokens


def _revive(error_type: str | None, message: str) -> SyscallError:
    """The recorded error, raised again (only SyscallError classes are revived; others as SyscallError)."""
    try:
        module, _, qualname = (error_type or "").partition(":")
        if module.split(".")[0] == "llmasos":
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if isinstance(cls, type) and issubclass(cls, SyscallError):
                return cls(message)
    except Exception:
        pass
    return SyscallError(message)


__all__ = ["FRAME", "Durability", "Journal", "NoJournal"]
