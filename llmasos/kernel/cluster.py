"""A cluster of kernels on one PostgreSQL: leases, fencing, adoption of a dead node's processes, and the
root user's operations on processes other nodes run.

Rule: built on PostgreSQL's own primitives (row locks, ``FOR UPDATE SKIP LOCKED``, an epoch per node as
the fencing token; ``memory/cluster.py`` has the statements), never on a consensus of our own. A node
owns a process through ``processes.node``; it renews its lease every ``KernelConfig.heartbeat`` seconds,
and a node whose lease (``KernelConfig.lease``) ran out is taken over by the first live node that sees
it: that node bumps its epoch (fencing it: every write of the old node is checked against its epoch by
a trigger in the database, so a node that lost its lease commits nothing) and restores its processes from the journal, as
boot-time recovery does (``kernel/recovery.py``): journaled results are not re-executed; a call in
flight is re-issued with the same idempotency key. One door: a kill, send or stdin from another node
is a request row that the owning node applies as its root process, through ``Kernel.syscall``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from llmasos.apps.app import SECRET
from llmasos.kernel.errors import log
from llmasos.kernel.journal import _revive
from llmasos.kernel.proc import LIVE
from llmasos.kernel.recovery import recover
from llmasos.memory import cluster as rows
from llmasos.memory import codec
from llmasos.memory.errors import Fenced
from llmasos.memory.writer import session_lost
from llmasos.syscalls import calls as c
from llmasos.syscalls.errors import NoSuchProcess, SyscallError, WaitTimeout
from llmasos.syscalls.types import ExitStatus, ProcInfo, Usage

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from llmasos.kernel.journal import Journal
    from llmasos.kernel.kernel import Kernel
    from llmasos.kernel.proc import Process
    from llmasos.memory.manager import MemoryManager

_LIVE = [s.value for s in LIVE]
_OPS = {"kill", "send", "stdin", "close", "logs"}
JOIN_GRACE = 5.0  # seconds a joining node's first lease lasts beyond KernelConfig.lease


class NodeUnreachable(SyscallError):
    """The node that runs the process did not answer in time; the request may or may not have been
    applied there."""


def default_node_id() -> str:
    """host-pid-random, in the characters a node id may hold."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


class Cluster:
    """This kernel's membership of a cluster: its lease, its adoptions, its requests to other nodes."""

    def __init__(self, kernel: Kernel, memory: MemoryManager, journal: Journal) -> None:
        cfg = kernel.config
        self.kernel, self.memory, self.journal = kernel, memory, journal
        self.node = cfg.node or default_node_id()
        self.lease, self.beat, self.poll = float(cfg.lease), float(cfg.heartbeat), float(cfg.cluster_poll)
        self.epoch = 0
        self.fenced = anyio.Event()  # set once this node lost its lease: its processes are stopped
        self.adopted: dict[str, list[int]] = {}  # dead node -> the pids this node adopted from it
        self._conn: AsyncConnection | None = None  # this node's own connection (the writer has another)
        self._lock = anyio.Lock()
        self._deadline = 0.0  # time.monotonic() past which this node's lease may have run out
        self._stop = threading.Event()  # ends the heartbeat thread
        self._fence: Callable[[AsyncConnection], Awaitable[None]] | None = None  # the check, as a statement
        self._apps: dict[str, Any] = {}  # spec -> App (or None), for the args other nodes' rows show

    # -- membership --------------------------------------------------------------------------

    async def join(self) -> None:
        """Take this node's lease and epoch; from now on the writer commits only while it holds them."""
        t0 = time.monotonic()
        first = self.lease + JOIN_GRACE  # (a node's start blocks its loop for a while: imports, the server)
        async with self._tx(fenced=False) as conn:
            self.epoch = await rows.join(conn, self.node, first, None)
        self._deadline = t0 + first
        self._fence = rows.fence(self.node, self.epoch, self._lost)
        self.memory.writer.on_fenced = self._lost
        await self.memory.writer.run(lambda conn: rows.fence_session(conn, self.node, self.epoch))
        rows.fence_new_connections(self.memory.writer.engine, self.node, self.epoch)
        self.journal.rows.node, self.journal.rows.epoch = self.node, self.epoch
        assert self.memory.mail_ids is not None
        self.journal.use_message_ids(self.memory.mail_ids)

    async def run(self) -> None:
        """The node's tasks: heartbeat and adoption, and requests from other nodes (kernel task group)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            tg.start_soon(self._requests)

    async def leave(self) -> None:
        """A clean stop (after the processes stopped and the writer flushed): the lease ends now, so the
        processes left alive are adopted by another node at once."""
        self._stop.set()
        try:
            if not self.fenced.is_set():
                await self.memory.flush()  # (Fenced if the lease was lost meanwhile: then nothing ends)
                async with self._tx(fenced=False) as conn:
                    await rows.leave(conn, self.node, self.epoch)
        except Fenced:
            pass  # (it lost the lease meanwhile: there is nothing to end)
        except Exception as exc:
            log.warning("cluster node %s could not end its lease (%s); others adopt its processes once it "
                        "runs out", self.node, exc)
        finally:
            await self._close()

    def _lost(self, why: str = "another node took over its lease") -> None:
        """Fenced: stop every local copy of a process, commit nothing more (idempotent)."""
        if self.fenced.is_set():
            return
        self.fenced.set()
        k = self.kernel
        log.error("cluster node %s lost its lease (epoch %d): %s; it stops its processes and commits nothing "
                  "more (their adopter runs them); restart it to rejoin", self.node, self.epoch, why)
        k.drop_journal()
        for proc in [p for p in k.processes.values() if p.alive]:
            k.kill(proc.pid)

    def _renew(self, loop: asyncio.AbstractEventLoop) -> None:
        """The heartbeat, in a thread of its own with its own connection: a kernel whose event loop is busy
        (an adoption's replay, an import) keeps its lease; a paused or partitioned one loses it."""
        asyncio.run(self._renew_async(loop))

    async def _renew_async(self, loop: asyncio.AbstractEventLoop) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        # (one kept connection, checked before each use: a broken one is replaced, not retried)
        engine = create_async_engine(self.memory.url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    async with engine.begin() as conn:
                        held = await rows.heartbeat(conn, self.node, self.epoch, self.lease)
                except Exception as exc:
                    if time.monotonic() >= self._deadline:  # (monotonic: clock skew cannot move it)
                        self._tell(loop, f"it could not renew its lease for {self.lease}s ({type(exc).__name__}: "
                                         f"{exc})")
                        return
                else:
                    if not held:
                        self._tell(loop, "another node took over its lease")
                        return
                    self._deadline = t0 + self.lease
                await asyncio.sleep(max(0.0, self.beat - (time.monotonic() - t0)))
        finally:
            await engine.dispose()

    def _tell(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        """From the heartbeat thread: the lease is lost (unless the node is leaving, or gone)."""
        if not self._stop.is_set():
            try:
                loop.call_soon_threadsafe(self._lost, why)
            except RuntimeError:  # (its event loop has closed: nothing runs there to stop)
                pass

    async def _watch(self) -> None:
        """Every heartbeat: adopt the processes of nodes whose lease ran out; keep spare number blocks."""
        thread = threading.Thread(target=self._renew, args=(asyncio.get_running_loop(),),
                                  name=f"llmasos cluster heartbeat {self.node}", daemon=True)
        thread.start()
        try:
            while not self.fenced.is_set():
                t0 = anyio.current_time()
                try:
                    await self._take_over()
                    await self._refill()
                except Fenced:
                    return
                except Exception as exc:
                    log.warning("cluster node %s: looking for dead nodes failed (%s); retrying", self.node, exc)
                await anyio.sleep(max(0.0, self.beat - (anyio.current_time() - t0)))
        finally:
            self._stop.set()

    async def _take_over(self) -> None:
        async with self._tx() as conn:
            took = await rows.take_over(conn, self.node, self.epoch, _LIVE)
        if not took.nodes:
            return
        for dead in took.nodes:
            self.adopted.setdefault(dead, [])
        if took.pids:
            report = await recover(self.kernel, self.journal, pids=took.pids, crashed=True)
            log.warning("cluster node %s adopted %d process(es) of %s in %.3fs (restored %s, lost %s)", self.node,
                        len(took.pids), ", ".join(took.nodes), report.seconds, report.restored, list(report.lost))
            self.adopted[took.nodes[0]].extend(took.pids)

    async def _refill(self) -> None:
        for blocks in (self.memory.pids, self.memory.mail_ids):
            if isinstance(blocks, rows.Blocks) and blocks.low:
                async with self._tx() as conn:
                    start = await rows.reserve(conn, blocks.key, blocks.block)
                blocks.add(start)  # (committed: numbers from it may be handed out)

    @asynccontextmanager
    async def _tx(self, *, fenced: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction on this node's connection (one at a time), checked by the fence first."""
        async with self._lock:
            if self._conn is None:
                self._conn = await self.memory.engine.connect()
            try:
                async with self._conn.begin():
                    if fenced and self._fence is not None:
                        await self._fence(self._conn)
                    yield self._conn
            except (Fenced, SyscallError):
                raise
            except Exception:
                await self._close_locked()
                raise

    async def _again(self, fn: Callable[[AsyncConnection], Awaitable[Any]], *, fenced: bool = False) -> Any:
        """fn in a transaction, once more on a new connection if the session was lost (a dropped idle
        session is only found at the first statement). fn must be safe to run twice: a read, or an update
        that sets what it sets whether or not it was committed before."""
        for last in (False, True):
            try:
                async with self._tx(fenced=fenced) as conn:
                    return await fn(conn)
            except Exception as exc:
                if last or not session_lost(exc):
                    raise
                log.info("cluster node %s: the database session was lost (%s); on a new one", self.node, exc)
        raise AssertionError("unreachable")

    async def _close(self) -> None:
        async with self._lock:
            await self._close_locked()

    async def _close_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await conn.close()
                except Exception:
                    pass

    # -- requests from other nodes (this node owns the process) --------------------------------

    async def _requests(self) -> None:
        while not self.fenced.is_set():
            try:
                asked = await self._again(lambda conn: rows.waiting(conn, self.node))
                taken = []
                if asked:  # (claimed in a fenced transaction: a node that lost its lease takes none)
                    async with self._tx() as conn:
                        taken = await rows.take(conn, self.node)
                for req in taken:
                    await self._apply(req)
            except Fenced:
                return
            except Exception as exc:
                log.warning("cluster node %s: reading requests failed (%s); retrying", self.node, exc)
                await anyio.sleep(self.beat)
            await anyio.sleep(self.poll)

    async def _apply(self, req: Any) -> None:
        """Apply another node's request as this node's root process (through the chokepoint)."""
        root = self.kernel.root
        state, etype = rows.DONE, None
        try:
            if req.op == "kill":
                value: Any = await root.syscall(c.Kill(req.pid))
            elif req.op == "send":
                value = await root.syscall(c.Send(req.pid, codec.loads(req.body)))
            elif req.op == "stdin":
                value = await root.syscall(c.Stdin(req.pid, codec.loads(req.body)))
            elif req.op == "close":
                value = await root.syscall(c.Stdin(req.pid, close=True))
            elif req.op == "logs":
                value = [list(chunk) for chunk in self.kernel.output(req.pid)]
            else:
                raise SyscallError(f"unknown cluster request {req.op!r}")
            answer = codec.dumps(value, lenient=True)
        except SyscallError as exc:
            state, answer = rows.FAILED, str(exc)
            etype = f"{type(exc).__module__}:{type(exc).__qualname__}"
        await self._again(lambda conn: rows.answer(conn, req.id, state, answer, etype), fenced=True)

    # -- the root user's operations on other nodes' processes ---------------------------------

    def remote(self, pid: int) -> bool:
        """Whether pid is not in this node's table (it may run on another node)."""
        return pid not in self.kernel.processes

    async def row(self, pid: int) -> Any:
        """pid's row, if another node runs (or ran) it; NoSuchProcess otherwise."""
        found = await self._again(lambda conn: rows.owner(conn, pid))
        if found is None or found.node is None or found.node == self.node:
            raise NoSuchProcess(f"no process {pid} on any node of the cluster (it never existed or was "
                                "already reaped); see ps -a")
        return found

    async def forward(self, caller: Process, op: str, pid: int, body: Any = None) -> Any:
        """Apply op on pid at the node that runs it, once that node answers (NodeUnreachable if none does
        within two leases)."""
        assert op in _OPS
        found = await self.row(pid)
        if caller.pid != 0:
            raise NoSuchProcess(f"process {pid} runs on cluster node {found.node}; only the root user "
                                "(ps, kill, wait, send, stdin, logs on any node) reaches another node's processes")
        if found.state not in _LIVE and op != "logs":
            if op == "kill":
                return False
            raise NoSuchProcess(f"process {pid} has ended (on node {found.node})")
        async with self._tx(fenced=False) as conn:
            request = await rows.ask(conn, found.node, pid, op, None if body is None else codec.dumps(body))
        limit = 2 * self.lease + self.beat + 5.0
        with anyio.move_on_after(limit):
            while True:
                await anyio.sleep(self.poll)
                try:
                    async with self._tx(fenced=False) as conn:
                        out = await rows.outcome(conn, request)  # (committed before it is raised below)
                except Exception as exc:
                    if not session_lost(exc):
                        raise
                    continue  # (rolled back, or its answer lost with the session: the limit below says so)
                if out is not None:
                    if out.state == rows.FAILED:
                        raise _revive(out.error_type, out.answer)
                    return codec.loads(out.answer)
        raise NodeUnreachable(f"cluster node {found.node} did not answer a {op} of process {pid} within "
                              f"{limit:g}s; it may or may not have been applied: check with ps, then retry")

    async def wait(self, caller: Process, pid: int, timeout: float | None) -> ExitStatus:
        """Wait for another node's process to end (its row, polled); it is not reaped there."""
        found = await self.row(pid)
        if caller.pid != 0:
            raise NoSuchProcess(f"process {pid} runs on cluster node {found.node}; only the root user waits "
                                "for another node's processes")
        with anyio.move_on_after(timeout):
            while found.state in _LIVE:
                await anyio.sleep(max(self.poll, 0.02))
                found = await self.row(pid)
            return ExitStatus(pid, found.state, codec.loads(found.exit_value) if found.exit_value else None,
                              found.error)
        raise WaitTimeout(f"process {pid} still runs after {timeout}s (on node {found.node})")

    # -- looking (ps, info): the process table of every node ----------------------------------

    async def ps(self, all: bool = False, limit: int = 2000) -> list[ProcInfo]:
        """This node's processes (as ``Kernel.ps``) and the other nodes' (from their rows), with NODE."""
        local = [_with_node(i, self.node) for i in self.kernel.ps(all)]
        async with self._tx(fenced=False) as conn:
            others = await rows.rows(conn, not_node=self.node, states=None if all else _LIVE, limit=limit)
        seen = {i.pid for i in local}
        return local + [self.info_of(r) for r in others if r.pid not in seen]

    async def info(self, pid: int) -> ProcInfo:
        return self.info_of(await self.row(pid))

    def info_of(self, row: Any) -> ProcInfo:
        """Another node's process, as ps shows it (usage once it ended; secret args as ***)."""
        u = json.loads(row.usage) if row.usage else {}
        try:
            args = tuple(codec.loads(row.args))
        except Exception:
            args = ()
        app = self._app(row.spec)
        args = app.shown(args) if app is not None else (SECRET,) * len(args)
        ended = row.state not in _LIVE
        return ProcInfo(pid=row.pid, ppid=row.parent, app=row.app, state=row.state, waiting_on=None,
                        priority=row.priority, args=args, started=row.started, ended=row.ended,
                        usage=Usage(**u) if u else Usage(0, 0, 0, 0.0, 0.0),
                        exit_value=codec.loads(row.exit_value) if ended and row.exit_value else None,
                        error=row.error, caps=json.loads(row.caps), node=row.node)

    def _app(self, spec: str | None) -> Any:
        if not spec or spec.startswith("<"):
            return None
        if spec not in self._apps:
            from llmasos.apps.registry import find_app

            try:
                self._apps[spec] = find_app(spec)
            except Exception:
                self._apps[spec] = None
        return self._apps[spec]

    async def follow(self, pid: int, *, history: bool = True) -> AsyncIterator[tuple[str, str]]:
        """Another node's process's output, polled (every heartbeat) until it ends."""
        root = self.kernel.root_process
        seen = 0 if history else len(await self.forward(root, "logs", pid))
        while True:
            chunks = await self.forward(root, "logs", pid)
            for stream, text in chunks[seen:]:
                yield stream, text
            seen = len(chunks)
            if (await self.row(pid)).state not in _LIVE:
                return
            await anyio.sleep(min(self.beat, 0.5))


def _with_node(info: ProcInfo, node: str) -> ProcInfo:
    from dataclasses import replace

    return replace(info, node=node)


__all__ = ["Cluster", "NodeUnreachable", "default_node_id"]
