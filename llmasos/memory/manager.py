"""The memory manager: opens the database, runs its writer, and owns the store and the journal's rows.

Rule: the kernel talks to memory through this object only: ``open`` before the kernel's task group
exists (lock, migrations; a broken database refuses to boot, untouched), ``serve`` as a task of the
kernel, ``close`` after it stopped (what is queued is committed). It stores and returns plain data;
what the journal means and which processes recovery restarts is the kernel's business.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import anyio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from llmasos.home import private_dir

from llmasos.memory import db
from llmasos.memory.cluster import Blocks, reserve
from llmasos.memory.errors import MemoryStoreError
from llmasos.memory.journal import JournalStore, PidAllocator
from llmasos.memory.migrations import migrate
from llmasos.memory.store import PRUNE_CHUNK, Store
from llmasos.memory.writer import Writer


MAIL_BLOCK = 1024  # a cluster node's mailbox row ids reserved at a time


def engine_dialect(url: str) -> str:
    """The database kind of a SQLAlchemy URL (sqlite, postgresql...)."""
    return make_url(url).get_backend_name()


async def _two(conn: Any, key: str, block: int) -> tuple[int, int]:
    return await reserve(conn, key, block), await reserve(conn, key, block)


class MemoryConfig(Protocol):
    """The fields of the kernel's config (``KernelConfig``, documented there) that memory reads."""

    database: str | None
    home: Path
    durable: bool
    journal_commit: str
    group_commit_ms: float
    db_busy_timeout: float
    db_synchronous: str
    pid_block: int
    wal_checkpoint_every: int
    retention: float | None
    max_args_size: int
    cluster: bool
    lease: float


class MemoryManager:
    """The database behind one kernel: store (contents), journal (durable syscalls), pids."""

    def __init__(self, url: str, engine: AsyncEngine, writer: Writer, lock: db.KernelLock | None) -> None:
        self.url = url
        self.where = db.describe(url)
        self.engine = engine
        self.writer = writer
        self.store = Store(writer)
        self.journal_rows: JournalStore | None = None  # None: the kernel runs without a journal
        self.pids: PidAllocator | Blocks | None = None
        self.mail_ids: Blocks | None = None  # a cluster node: mailbox row ids (cluster-unique)
        self.db_id = ""
        self.version = 0
        self.retention: float | None = None  # seconds ended processes' rows are kept (None: forever)
        self._lock = lock

    @classmethod
    async def open(cls, config: MemoryConfig) -> MemoryManager:
        """Lock, open and migrate the database named by config (``database`` or ``home``)."""
        url = db.database_url(config.database, config.home)
        where = db.describe(url)
        path = db.sqlite_path(url)
        cluster = getattr(config, "cluster", False)
        if cluster and engine_dialect(url) != "postgresql":
            raise MemoryStoreError(f"a cluster node needs a PostgreSQL database, not {where}; pass "
                                   "--database postgresql://... (or KernelConfig.database)")
        lock = None
        if path is not None:
            private_dir(path.parent, tighten=config.database is None)  # (home, unless the user named a file)
            lock = db.KernelLock(path)
            lock.acquire()
            db.make_private(path)
        engine = db.create_engine(url, busy_timeout=config.db_busy_timeout, synchronous=config.db_synchronous,
                                  idle_timeout=config.lease if cluster else None)
        writer = Writer(engine, where, delay=config.group_commit_ms / 1000,
                        busy_timeout=config.db_busy_timeout, checkpoint_every=config.wal_checkpoint_every)
        self = cls(url, engine, writer, lock)
        try:
            conn = await writer.open()
            if engine.dialect.name == "postgresql":
                await self._pg_lock(conn, shared=cluster)
            if cluster:  # (nodes may start together: one migrates, the others wait for its lock)
                await conn.execute(text("SELECT pg_advisory_lock(4242427)"))
                await conn.commit()
            self.version = await conn.run_sync(migrate)
            if cluster:
                await conn.execute(text("SELECT pg_advisory_unlock(4242427)"))
                await conn.commit()
            meta = await self.store.meta()
            self.db_id = meta["db_id"]
            if cluster:
                self.pids = await self._blocks("next_pid", config.pid_block)
                self.mail_ids = await self._blocks("next_mail", MAIL_BLOCK)
            else:
                start = int(meta["next_pid"])
                self.pids = PidAllocator(self.store, start, config.pid_block)
                await self.store.set_meta("next_pid", str(self.pids.limit))
        except BaseException as exc:
            await self._dispose()
            if isinstance(exc, MemoryStoreError) or not isinstance(exc, Exception):
                raise
            raise db.translate(exc, where) from exc
        if config.durable:
            self.journal_rows = JournalStore(self.store, self.db_id, group=config.journal_commit == "group",
                                             max_args_size=config.max_args_size)
        self.retention = config.retention
        return self

    async def _blocks(self, key: str, block: int) -> Blocks:
        """A cluster node's numbers under meta key: a block in use and a spare, reserved now."""
        first, spare = await self.writer.run(lambda conn: _two(conn, key, block))
        blocks = Blocks(key, block, first)
        blocks.add(spare)
        return blocks

    async def _pg_lock(self, conn: Any, *, shared: bool) -> None:
        # Invariant: a lone kernel holds the lock exclusively; cluster nodes share it (kernel/cluster.py).
        how = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        got = (await conn.execute(text(f"SELECT {how}(4242426)"))).scalar()
        await conn.commit()
        if not got:
            raise self._locked(shared)

        def relock(held: Any) -> None:
            # The lock is the session's: one the server dropped took it along, and the writer goes on
            # on a new connection (writer.py), which must take it again, or refuse to write.
            if not held:
                raise self._locked(shared)

        db.on_new_connections(self.engine, f"SELECT {how}(4242426)", relock)

    def _locked(self, shared: bool) -> db.DatabaseLocked:
        other = "a lone llmasos kernel (not a cluster node)" if shared else "another llmasos kernel"
        return db.DatabaseLocked(f"{other} is using {self.where}; stop it first, or give this kernel its "
                                 "own database (cluster nodes share one: llmasos serve --database URL)")

    async def serve(self) -> None:
        """The writer task and, with a retention, the pruning of ended processes' rows (at once, then
        every retention seconds, at most hourly). Run it in the kernel's task group."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.writer.serve)
            if self.retention is not None:
                tg.start_soon(self._prune_every, min(max(self.retention, 0.05), 3600.0))

    async def prune(self) -> int:
        """Delete the rows of processes that ended more than ``retention`` seconds ago and that no live
        process can wait for, with their journal and context rows (never notes or keys); how many went."""
        if self.retention is None:
            return 0
        before, gone = time.time() - self.retention, 0
        while True:
            done = await self.store.prune(before)
            gone += done
            if done < PRUNE_CHUNK:
                return gone

    async def _prune_every(self, period: float) -> None:
        while True:
            try:
                await self.prune()
            except MemoryStoreError as exc:  # (a locked database, say): try again next period
                self.writer.on_error(exc, None)
            await anyio.sleep(period)

    async def flush(self) -> None:
        """Wait until everything queued (journal entries, process rows) is committed."""
        await self.writer.flush()

    async def close(self) -> None:
        """Hand back the unused pids, commit what is queued and release the database."""
        try:
            if self.pids is not None:
                self.pids.release()  # a clean restart goes on at the next pid (a cluster node: nothing)
            await self.writer.close()
        finally:
            await self._dispose()

    async def _dispose(self) -> None:
        try:
            await self.writer.close()
            await self.engine.dispose()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
