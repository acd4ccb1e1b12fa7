"""Crash recovery: on boot, restart the processes that were alive when the kernel stopped.

Rule: a process the database shows alive is started again with the same pid, app, args, parent,
priority and capabilities, marked ``restored`` so the journal replays its completed syscalls; its
unread mailbox and unread stdin lines come back (an end of input does not). One whose app cannot be
found is marked LOST with the reason; one whose app is not restartable is marked KILLED; both stay in
the kernel's table (``ps -a``, ``wait``) until reaped, never runnable. Parents start before children
(pids grow), so a child finds its parent alive. Nothing is started twice: the rows are updated, never
inserted again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmasos.apps.app import App
from llmasos.kernel import caps as capmod
from llmasos.kernel.proc import LIVE, ProcState, Process
from llmasos.memory import codec
from llmasos.memory.journal import STDIN
from llmasos.syscalls.types import ExitStatus, Message

if TYPE_CHECKING:
    from llmasos.memory.manager import MemoryManager


@dataclass(slots=True)
class Recovery:
    """What boot-time recovery did."""

    restored: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)  # pid -> why
    killed: dict[int, str] = field(default_factory=dict)  # not restartable: pid -> why
    seconds: float = 0.0


def caps_from(data: dict[str, Any]) -> capmod.Caps:
    """Caps from ``Caps.as_dict()``."""
    kwargs = {}
    for name in capmod.Caps.__dataclass_fields__:
        if name in data:
            value = data[name]
            kwargs[name] = None if value == "*" else frozenset(value) if isinstance(value, list) else value
    return capmod.Caps(**kwargs)


async def recover(kernel: Any, mm: MemoryManager) -> Recovery:
    """Restart every process the database shows alive (the kernel's task group must be running)."""
    t0 = time.perf_counter()
    report = Recovery()
    journal, store = mm.journal, mm.store
    rows = await store.processes(states=[s.value for s in LIVE])
    if journal is None or not rows:
        return report
    pids = [r.pid for r in rows]
    entries = await store.journal_for(pids)
    mail = await store.mailboxes(pids)
    journal.start_message_ids(await store.max_mailbox_id())
    in_flight = [journal.key(pid, n) for pid, es in entries.items() for n, e in es.items()
                 if e.call == "Spawn" and e.status == "intent"]
    journal.spawned.update(await store.spawned_by(in_flight))
    await _load_ended_children(journal, store, set(pids))
    journal.restoring = True
    try:
        for row in rows:
            _restore(kernel, journal, row, entries.get(row.pid), mail.get(row.pid, ()), report)
    finally:
        journal.restoring = False
    by_pid = {row.pid: row for row in rows}
    for state, ended in ((ProcState.LOST, report.lost), (ProcState.KILLED, report.killed)):
        for pid, why in ended.items():
            store.post_process_lost(pid, state.value, why)
            kernel.add_ended(_ended_process(kernel, by_pid[pid], state, why))  # for ps -a and wait
    await store.w.flush()
    report.seconds = time.perf_counter() - t0
    return report


async def _load_ended_children(journal: Any, store: Any, parents: set[int]) -> None:
    ended = [ProcState.EXITED.value, ProcState.KILLED.value, ProcState.CRASHED.value, ProcState.LOST.value]
    for r in await store.processes(states=ended, parents=sorted(parents)):
        journal.ended[r.pid] = ExitStatus(r.pid, r.state, codec.loads(r.exit_value), r.error)


def _ended_process(kernel: Any, row: Any, state: ProcState, why: str) -> Process:
    """The record of a process recovery could not restart, as ``ps -a`` and ``wait`` show it."""
    try:
        args = tuple(codec.loads(row.args))
    except Exception:
        args = ()  # its values need the app's own classes, which are gone
    try:
        caps = caps_from(json.loads(row.caps))
    except Exception:
        caps = capmod.Caps()
    parent = kernel.processes.get(row.parent)
    return Process(pid=row.pid, app=App(row.app, "could not be restarted"), args=args, kwargs={},
                   parent=row.parent if parent is not None and parent.alive else 0,
                   priority=row.priority, caps=caps, state=state, started=row.started,
                   ended=time.time(), error=why, restored=True)


def _restore(kernel: Any, journal: Any, row: Any, entries: dict[int, Any] | None, mail: Any,
             report: Recovery) -> None:
    from llmasos.apps.registry import find_app

    if not row.spec:
        report.lost[row.pid] = (f"app {row.app!r} was started from an App object llmasos cannot find "
                                "again; spawn apps by name or path (file.py:app) to make them restartable")
        return
    try:
        app = find_app(row.spec)
    except Exception as exc:
        report.lost[row.pid] = f"its app {row.spec!r} could not be found after the restart: {exc}"
        return
    if not app.restartable:
        report.killed[row.pid] = (f"the kernel stopped while it ran, and app {app.name!r} is not "
                                  "restartable (App(..., restartable=False))")
        return
    parent_proc = kernel.processes.get(row.parent)
    parent = row.parent if parent_proc is not None and parent_proc.alive else 0
    try:
        proc = kernel.start_process(app, codec.loads(row.args), codec.loads(row.kwargs),
                                    priority=row.priority, parent=parent, pid=row.pid)
    except Exception as exc:
        report.lost[row.pid] = f"it could not be restarted: {type(exc).__name__}: {exc}"
        return
    proc.restored = True
    proc.started = row.started
    try:
        proc.caps = caps_from(json.loads(row.caps))
    except Exception:
        pass  # keep what grant() gave
    if entries:
        journal.replay[row.pid] = dict(entries)
        journal.replay_end[row.pid] = max(entries)
    for m in mail:
        if m.sender == STDIN:  # an unread stdin line
            journal.adopt_stdin(row.pid, m.id)
            proc.get_stdin().put(codec.loads(m.body))
            continue
        msg = Message(m.sender, codec.loads(m.body))
        journal.adopt_message(row.pid, msg, m.id)
        proc.get_mailbox().put(msg)
    report.restored.append(row.pid)
