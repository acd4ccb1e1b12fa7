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
from sqlalchemy.ext.asyncio import AsyncEngine

from llmasos.home import private_dir
from llmasos.memory import db
from llmasos.memory.errors import MemoryStoreError
from llmasos.memory.journal import JournalStore, PidAllocator
from llmasos.memory.migrations import migrate
from llmasos.memory.store import PRUNE_CHUNK, Store
from llmasos.memory.writer import Writer


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


class MemoryManager:
    """The database behind one kernel: store (contents), journal (durable syscalls), pids."""

    def __init__(self, url: str, engine: AsyncEngine, writer: Writer, lock: db.KernelLock | None) -> None:
        self.url = url
        self.where = db.describe(url)
        self.engine = engine
        self.writer = writer
        self.store = Store(writer)
        self.journal_rows: JournalStore | None = None  # None: the kernel runs without a journal
        self.pids: PidAllocator | None = None
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
        lock = None
        if path is not None:
            private_dir(path.parent, tighten=config.database is None)  # (home, unless the user named a file)
            lock = db.KernelLock(path)
            lock.acquire()
            db.make_private(path)
        engine = db.create_engine(url, busy_timeout=config.db_busy_timeout,
                                  synchronous=config.db_synchronous)
        writer = Writer(engine, where, delay=config.group_commit_ms / 1000,
                        busy_timeout=config.db_busy_timeout, checkpoint_every=config.wal_checkpoint_every)
        self = cls(url, engine, writer, lock)
        try:
            conn = await writer.open()
            if engine.dialect.name == "postgresql":
                await self._pg_lock(conn)
            self.version = await conn.run_sync(migrate)
            meta = await self.store.meta()
            self.db_id = meta["db_id"]
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

    async def _pg_lock(self, conn: Any) -> None:
        from sqlalchemy import text

        got = (await conn.execute(text("SELECT pg_try_advisory_lock(4242426)"))).scalar()
        await conn.commit()
        if not got:
            raise db.DatabaseLocked(f"another llmasos kernel is using {self.where}; stop it first, or "
                                    "give this kernel its own database")

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
                self.pids.release()  # a clean restart goes on at the next pid
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
