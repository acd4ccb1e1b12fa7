"""The syscall journal: every syscall's result is committed before the process sees it, and replayed.

Rule: ``Kernel.syscall`` hands each call to ``Journal.run``. A live call runs its handler and its
result (or typed error) is committed to the journal at (pid, n) before it is returned; a process
restored after a crash gets, for each position its journal holds, the recorded result without the
handler running (no model call, no tool run, no sleep). The first position the journal lacks runs
live. A call with an external effect (spawn, kill, send, call_tool) also commits its *intent* before
it runs; one that was in flight at the crash is re-issued with the same idempotency key.

Guarantee: a journaled result never re-executes. A call in flight at the crash (intent recorded, no
result) is re-issued at least once, with the same key (``current_idempotency_key()``), so a tool that
honours the key takes effect exactly once. In ``group`` commit mode, results of calls without an
external effect are committed within ``group_commit_ms``; those lost in that window run again live.
"""

from __future__ import annotations

import importlib
import itertools
import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from llmasos.memory import codec
from llmasos.memory.keys import KEY as _KEY
from llmasos.memory.keys import current_idempotency_key
from llmasos.memory.streams import JournaledStream, ReplayStream
from llmasos.syscalls.errors import ReplayMismatch, SyscallError
from llmasos.syscalls.types import Completion, ExitStatus, Message

if TYPE_CHECKING:
    from llmasos.memory.store import Store


NOT_JOURNALED = frozenset({"GetPid", "Exit"})  # pure, or ends the process (its row records that)
REPLAY_BY_RUNNING = frozenset({"Write"})  # replay re-runs them: they rebuild in-memory state (the log)
STDIN = -1  # the sender of a mailbox row that is an unread stdin line
EFFECTS = frozenset({"Spawn", "Kill", "Send", "CallTool"})  # intent first; a syscall class may also
# declare ``effect: ClassVar[bool] = True``

__all__ = ["EFFECTS", "Journal", "PidAllocator", "current_idempotency_key"]


class PidAllocator:
    """Pids from a block reserved in the database: a pid is never handed out twice, across restarts."""

    BLOCK = 64

    def __init__(self, store: Store, start: int) -> None:
        self.store, self.next, self.limit = store, start, start + self.BLOCK

    def __iter__(self) -> PidAllocator:
        return self

    def __next__(self) -> int:
        pid = self.next
        self.next += 1
        if self.next + self.BLOCK // 2 > self.limit:
            # Invariant: the new limit is queued before any row that uses a pid from its block.
            self.limit += self.BLOCK
            self.store.post_meta("next_pid", str(self.limit))
        return pid


class Journal:
    """The kernel's journal hook (``kernel.journal``)."""

    def __init__(self, store: Store, db_id: str, *, group: bool = False) -> None:
        self.store = store
        self.db_id = db_id
        self.group = group  # group commit: results of effect-free calls are posted, not awaited
        self.replay: dict[int, dict[int, Any]] = {}  # restored pid -> n -> journal row not yet replayed
        self.replay_end: dict[int, int] = {}  # restored pid -> its last journaled position
        self.spawned: dict[str, int] = {}  # key of a spawn in flight at the crash -> the pid it made
        self.ended: dict[int, ExitStatus] = {}  # children that ended in an earlier life, for waits
        self.restoring = False  # recovery is starting processes: they are in the table already
        self._spawn_key: str | None = None  # while a spawn handler runs: the key its child records
        self._messages: dict[int, tuple[Message, int, int]] = {}  # id(msg) -> (msg, row id, pid)
        self._msg_ids = itertools.count(1)
        self._stdin: dict[int, deque[int]] = {}  # pid -> row ids of its unread stdin lines, in order
        self.live = 0  # processes started and not ended (whether a commit has anyone to share with)

    def key(self, pid: int, n: int) -> str:
        return f"{self.db_id}-{pid}-{n}"

    # -- the chokepoint's hook ---------------------------------------------------------------

    async def run(self, kernel: Any, proc: Any, n: int, call: Any, handler: Any) -> Any:
        name = type(call).__name__
        if name in NOT_JOURNALED:
            return await handler(kernel, proc, call)
        digest = codec.digest(call)
        in_flight = False
        if proc.restored and proc.pid in self.replay:
            entry = self._next_entry(proc, n, name, digest)
            if entry is not None:
                if entry.status != "intent":
                    return await self._replayed(kernel, proc, call, entry, handler)
                in_flight = True  # started before the crash, outcome unknown: re-issue, same key
        effect = name in EFFECTS or bool(getattr(type(call), "effect", False))
        row = {"pid": proc.pid, "n": n, "call": name, "digest": digest}
        if effect and not in_flight:
            await self._write([("journal+", {**row, "status": "intent", "result": None,
                                             "error_type": None, "at": time.time()})])
        recorded = effect or in_flight
        token = _KEY.set(self.key(proc.pid, n))
        try:
            result = await self._execute(kernel, proc, call, handler)
        except SyscallError as exc:
            await self._commit(row, recorded, effect, error=exc)
            raise
        except (TypeError, ValueError) as exc:
            from llmasos.syscalls.errors import InvalidArguments

            await self._commit(row, recorded, effect, error=InvalidArguments(f"{call.name}: {exc}"))
            raise
        finally:
            _KEY.reset(token)
        if name == "Generate" and getattr(call, "stream", False) and not isinstance(result, Completion):
            return JournaledStream(
                result, lambda value: self._commit(row, recorded, effect, value=value),
                lambda value: self._post(row, recorded, value))
        await self._commit(row, recorded, effect, value=result)
        return result

    async def _execute(self, kernel: Any, proc: Any, call: Any, handler: Any) -> Any:
        name = type(call).__name__
        if name == "Spawn":
            key = _KEY.get()
            made = self.spawned.pop(key, None) if key is not None else None
            if made is not None:  # the child exists (and is restored on its own): do not spawn twice
                return made
            self._spawn_key = key
            try:
                return await handler(kernel, proc, call)
            finally:
                self._spawn_key = None
        if name == "Wait" and call.pid in self.ended and call.pid not in kernel.processes:
            return self.ended.pop(call.pid)
        return await handler(kernel, proc, call)

    async def _commit(self, row: dict[str, Any], update_: bool, effect: bool, *, value: Any = None,
                      error: BaseException | None = None) -> None:
        rows = self._rows(row, update_, value, error)
        if self.group and not effect:
            self.store.w.post(rows=rows)
        else:
            await self._write(rows)

    async def _write(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Commit rows before returning: grouped with other processes' by the writer's task, or, when
        this is the only live process (nobody to share a commit with), at once on this thread."""
        if self.live > 1 or not self.store.w.write_now(rows):
            await self.store.w.run(rows=rows)

    def _post(self, row: dict[str, Any], update_: bool, value: Any) -> None:
        self.store.w.post(rows=self._rows(row, update_, value, None))

    def _rows(self, row: dict[str, Any], update_: bool, value: Any,
              error: BaseException | None) -> list[tuple[str, dict[str, Any]]]:
        message_row = None
        if error is not None:
            cls = type(error)
            full = {**row, "status": "error", "result": str(error),
                    "error_type": f"{cls.__module__}:{cls.__qualname__}", "at": time.time()}
        else:
            full = {**row, "status": "ok", "result": codec.dumps(value), "error_type": None,
                    "at": time.time()}
            if row["call"] == "Recv" and isinstance(value, Message):
                taken = self._messages.pop(id(value), None)
                message_row = taken[1] if taken is not None else None
            elif row["call"] == "ReadLine" and isinstance(value, str):
                lines = self._stdin.get(row["pid"])
                message_row = lines.popleft() if lines else None  # stdin is read in order
        rows = [("journal=" if update_ else "journal+", full)]
        if message_row is not None:  # the message (line) leaves the mailbox with the call's entry
            rows.append(("mailbox-", {"id": message_row}))
        return rows

    # -- replay ------------------------------------------------------------------------------

    def _next_entry(self, proc: Any, n: int, name: str, digest: str) -> Any:
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

    async def _replayed(self, kernel: Any, proc: Any, call: Any, entry: Any, handler: Any) -> Any:
        if entry.status == "error":
            raise _revive(entry.error_type, entry.result)
        value = codec.loads(entry.result)
        if entry.call in REPLAY_BY_RUNNING:
            await handler(kernel, proc, call)
        elif isinstance(value, dict) and "chunks" in value:  # a streamed generate
            _account(proc, value["completion"])
            return ReplayStream(value["chunks"], value["completion"])
        elif isinstance(value, Completion):
            _account(proc, value)
        return value

    # -- hooks the kernel calls --------------------------------------------------------------

    def process_started(self, proc: Any) -> None:
        """Queue the new process's row (recovery's own restarts are already in the table)."""
        self.live += 1
        if self.restoring:
            return
        from llmasos.apps.registry import app_spec

        spec = app_spec(proc.app)
        self.store.post_process({
            "pid": proc.pid, "app": proc.app.name, "spec": spec, "args": codec.dumps(proc.args),
            "kwargs": codec.dumps(proc.kwargs), "state": proc.state.value, "priority": proc.priority,
            "parent": proc.parent, "caps": json.dumps(proc.caps.as_dict()), "usage": None,
            "exit_value": None, "error": None, "started": proc.started, "ended": None,
            "spawn_key": self._spawn_key,
        }, urgent=not self.group)
        self._spawn_key = None  # Invariant: a spawn handler starts exactly one process

    def process_ended(self, proc: Any) -> None:
        """Queue how proc ended; it will not be restored, and its unread mail is dropped."""
        self.live -= 1
        u = proc.usage
        self.store.post_process_end(proc.pid, {
            "state": proc.state.value, "ended": proc.ended, "exit_value": codec.dumps(proc.exit_value),
            "error": proc.error, "usage": json.dumps({
                "syscalls": u.syscalls, "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens, "model_time": u.model_time,
                "syscall_time": u.syscall_time}),
        }, urgent=not self.group)
        self.replay.pop(proc.pid, None)
        for key in [k for k, (_, _, pid) in self._messages.items() if pid == proc.pid]:
            del self._messages[key]
        self._stdin.pop(proc.pid, None)

    def message_sent(self, pid: int, msg: Message) -> None:
        """Persist a message put in pid's mailbox until a recv takes it (its journal entry deletes it)."""
        row_id = next(self._msg_ids)
        self._messages[id(msg)] = (msg, row_id, pid)
        self.store.w.post(rows=[("mailbox+", {"id": row_id, "pid": pid, "sender": msg.sender,
                                              "body": codec.dumps(msg.body)})], urgent=not self.group)

    def adopt_message(self, pid: int, msg: Message, row_id: int) -> None:
        """A persisted unread message, put back in a restored mailbox."""
        self._messages[id(msg)] = (msg, row_id, pid)

    def stdin_written(self, pid: int, line: str) -> None:
        """Persist a line put in pid's stdin until a readline takes it (a mailbox row from STDIN)."""
        row_id = next(self._msg_ids)
        self._stdin.setdefault(pid, deque()).append(row_id)
        self.store.w.post(rows=[("mailbox+", {"id": row_id, "pid": pid, "sender": STDIN,
                                              "body": codec.dumps(line)})], urgent=not self.group)

    def adopt_stdin(self, pid: int, row_id: int) -> None:
        """A persisted unread stdin line, put back in a restored stdin (in order)."""
        self._stdin.setdefault(pid, deque()).append(row_id)

    def start_message_ids(self, after: int) -> None:
        self._msg_ids = itertools.count(after + 1)


_DETERMINISM = ("An app's code between syscalls must be deterministic (time, randomness and I/O go "
                "through syscalls) for the kernel to replay it; spawn it anew.")


def _account(proc: Any, completion: Completion | None) -> None:
    if completion is not None:
        proc.usage.prompt_tokens += completion.prompt_tokens
        proc.usage.completion_tokens += completion.completion_tokens


def _revive(error_type: str | None, message: str) -> SyscallError:
    """The recorded error, raised again."""
    try:
        module, _, qualname = (error_type or "").partition(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, SyscallError):
            return cls(message)
    except Exception:
        pass
    return SyscallError(message)
