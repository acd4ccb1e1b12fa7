"""Crash recovery: on boot, restart the processes that were alive when the kernel stopped.

Rule: memory/ hands over a plan (plain rows); the decisions are made here. A process the database shows
alive is started again with the same pid, app, args, parent and priority, marked ``restored`` so the
journal replays its completed syscalls; its unread mailbox and unread stdin lines come back (an end of
input does not). Its capabilities are the intersection of the ones it held and the ones its app's
manifest grants today, so narrowing an app narrows its resumed processes too. One whose app cannot be
found is marked LOST with the reason; one whose app is not restartable is marked KILLED; both stay in the
kernel's table (``ps -a``, ``wait``) until reaped, never runnable. Parents start before children (pids
grow), so a child finds its parent alive. Nothing is started twice: the rows are updated, never inserted
again.

A crash loop ends: a process restored ``KernelConfig.max_recoveries`` times in a row after a crash
without making progress (its journal neither grew nor completed a call since the previous restore) is
marked LOST, with the syscall it was in, instead of being run again (a tool that kills the kernel would
otherwise kill every boot). When some of those processes were in an effect call at the crash (a tool
call, its intent journaled, no result), only they are blamed; the others are restored. A restored
process whose first live syscall waits on the world (recv, read, sleep, wait) is no suspect either: its
count starts again (``parked``). So does every count after a clean shutdown (``meta.last_stop``). A
process in a long call (a generate) when the kernel is killed from outside, again and again, cannot be
told from one whose call kills the kernel: raise ``max_recoveries`` where that is expected.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmasos.apps.app import App
from llmasos.apps.registry import find_app
from llmasos.kernel import caps as capmod
from llmasos.kernel.proc import LIVE, ProcState, Process
from llmasos.memory import codec
from llmasos.memory.journal import STDIN
from llmasos.memory.recovery import RecoveryPlan, plan
from llmasos.syscalls import calls as c
from llmasos.syscalls.types import ExitStatus, Message

if TYPE_CHECKING:
    from llmasos.kernel.journal import Journal
    from llmasos.kernel.kernel import Kernel
    from llmasos.memory.store import Store

FACE_SPEC = "<face> "  # the spec a face's request process is recorded with: recovery never restarts one
ENDED = (ProcState.EXITED, ProcState.KILLED, ProcState.CRASHED, ProcState.LOST)
LAST_STOP, CLEAN, RUNNING = "last_stop", "clean", "running"  # meta.last_stop and its values

__all__ = ["FACE_SPEC", "PARKS", "Recovery", "clean_stop", "parked", "recover"]


@dataclass(slots=True)
class Recovery:
    """What boot-time recovery did."""

    restored: list[int] = field(default_factory=list)
    lost: dict[int, str] = field(default_factory=dict)  # pid -> why
    killed: dict[int, str] = field(default_factory=dict)  # not restartable: pid -> why
    suspects: set[int] = field(default_factory=set)  # restored, not yet seen waiting on the world (parked)
    seconds: float = 0.0


async def recover(kernel: Kernel, journal: Journal, *, node: str | None = None, pids: list[int] | None = None,
                  crashed: bool | None = None) -> Recovery:
    """Restart every process the database shows alive (the kernel's task group must be running).

    A cluster node (kernel/cluster.py) restarts only its own (node), or the ones it adopted (pids,
    crashed: their node died)."""
    t0 = time.perf_counter()
    report = Recovery()
    store = journal.rows.store
    found: RecoveryPlan = await plan(store, [s.value for s in LIVE], [s.value for s in ENDED], pids=pids, node=node)
    if crashed is None:
        crashed = (await store.meta()).get(LAST_STOP, CLEAN) != CLEAN
    counts, stuck = _without_progress(found, crashed, kernel.config.max_recoveries)
    # Invariant: the counts are committed before any restored process runs again (it may crash us).
    await store.set_restarts(counts, RUNNING)
    if not found.rows:
        return report
    journal.start_message_ids(found.max_mailbox_id)
    spawn = c.Spawn.__name__
    in_flight = [journal.rows.key(pid, n) for pid, es in found.entries.items() for n, e in es.items()
                 if e.call == spawn and e.status == "intent"]
    journal.spawned.update(await store.spawned_by(in_flight))
    for r in found.ended_children:
        journal.ended[r.pid] = ExitStatus(r.pid, r.state, codec.loads(r.exit_value), r.error)
    journal.restoring = True
    try:
        for row in found.rows:
            if row.pid in stuck:
                report.lost[row.pid] = stuck[row.pid]
                continue
            _restore(kernel, journal, row, found.entries.get(row.pid), found.mail.get(row.pid, ()), report)
    finally:
        journal.restoring = False
    by_pid = {row.pid: row for row in found.rows}
    report.suspects = set(report.restored)
    if pids is not None:  # an adoption adds to what the boot restored
        report.suspects |= kernel.recovery.suspects
    kernel.recovery = report  # (before the restored processes first run, at the next await)
    for state, ended in ((ProcState.LOST, report.lost), (ProcState.KILLED, report.killed)):
        for pid, why in ended.items():
            store.post_process_lost(pid, state.value, why)
            kernel.add_ended(_ended_process(kernel, by_pid[pid], state, why))  # for ps -a and wait
    await store.w.flush()
    report.seconds = time.perf_counter() - t0
    return report


PARKS = frozenset({"recv", "stdin", "sleep", "child"})  # Syscall.waits of the calls that wait on the world


def parked(kernel: Kernel, journal: Journal, proc: Process, n: int) -> None:
    """A suspect's syscall n waits on the world (``PARKS``): if it runs live (past the replay), the
    process survived its recovery, and its count of recoveries without progress starts again."""
    if n > journal.replay_end.get(proc.pid, 0):
        kernel.recovery.suspects.discard(proc.pid)
        journal.rows.store.post_restarts_reset(proc.pid)


def clean_stop(store: Store) -> None:
    """Queue the mark of a clean shutdown: the next boot's restores are not counted as after a crash."""
    store.post_meta(LAST_STOP, CLEAN)


def _without_progress(found: RecoveryPlan, crashed: bool,
                      limit: int) -> tuple[list[tuple[int, int, int]], dict[int, str]]:
    """(pid, restarts, mark) of each process to record, and the processes to mark LOST, with why.

    A process's mark counts its journal entries plus the completed ones: it grows with any progress.
    restarts: the recoveries in a row, after crashes, that found the mark where the previous one left it.
    """
    counts: list[tuple[int, int, int]] = []
    over: dict[int, int] = {}  # pid -> restarts, for those at the limit
    for row in found.rows:
        entries = found.entries.get(row.pid) or {}
        mark = len(entries) + sum(1 for e in entries.values() if e.status != "intent")
        restarts = row.restarts + 1 if crashed and mark == row.restart_mark else 0
        counts.append((row.pid, restarts, mark))
        if restarts >= limit:
            over[row.pid] = restarts
    in_call = {pid: min(n for n, e in found.entries[pid].items() if e.status == "intent")
               for pid in over if any(e.status == "intent" for e in (found.entries.get(pid) or {}).values())}
    stuck = {}
    for pid, restarts in over.items():
        if in_call and pid not in in_call:
            continue  # others were in a call when the kernel died: blame those, spare this one
        entries = found.entries.get(pid) or {}
        if pid in in_call:
            n = in_call[pid]
            where = f"in its syscall #{n} ({entries[n].call.lower()})"
        elif entries:
            n = max(entries)
            where = f"in its code or the syscall after #{n} ({entries[n].call.lower()})"
        else:
            where = "before its first journaled syscall"
        runs = "recovery" if restarts == 1 else f"{restarts} recoveries in a row"
        stuck[pid] = (f"the kernel stopped while it was {where}, and the {runs} that ran it again made no "
                      f"progress (KernelConfig.max_recoveries = {limit}); it is not run again: fix what that "
                      "call does and spawn it anew")
    return counts, stuck


def stored_caps(data: dict[str, Any]) -> capmod.Caps:
    """Caps from ``Caps.as_dict()`` (as the process table stores them)."""
    kwargs = {}
    for name in capmod.FIELDS:
        if name in data:
            value = data[name]
            kwargs[name] = None if value == "*" else frozenset(value) if isinstance(value, list) else value
    return capmod.Caps(**kwargs)


def _ended_process(kernel: Kernel, row: Any, state: ProcState, why: str) -> Process:
    """The record of a process recovery could not restart, as ``ps -a`` and ``wait`` show it."""
    try:
        args = tuple(codec.loads(row.args))
    except Exception:
        args = ()  # a row this version cannot decode: show no arguments rather than fail the boot
    try:
        caps = stored_caps(json.loads(row.caps))
    except Exception:
        caps = capmod.Caps()
    parent = kernel.processes.get(row.parent)
    app = App("lost", "could not be restarted")
    app.name = row.app  # as stored, even a name that is no longer valid (an older llmasos's)
    return Process(pid=row.pid, app=app, args=args, kwargs={},
                   parent=row.parent if parent is not None and parent.alive else 0,
                   priority=row.priority, caps=caps, state=state, started=row.started,
                   ended=time.time(), error=why, restored=True)


def _restore(kernel: Kernel, journal: Journal, row: Any, entries: dict[int, Any] | None, mail: Any,
             report: Recovery) -> None:
    if row.spec and row.spec.startswith(FACE_SPEC):
        report.killed[row.pid] = (f"the kernel stopped while it served a request from "
                                  f"{row.spec[len(FACE_SPEC):]}; its client has to send it again")
        return
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
        held = stored_caps(json.loads(row.caps))
        proc = kernel.start_process(app, codec.loads(row.args), codec.loads(row.kwargs),
                                    priority=row.priority, parent=parent, pid=row.pid,
                                    caps=capmod.intersect(held, capmod.grant(capmod.ROOT, app)))
    except Exception as exc:
        report.lost[row.pid] = f"it could not be restarted: {type(exc).__name__}: {exc}"
        return
    proc.restored = True
    proc.started = row.started
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
