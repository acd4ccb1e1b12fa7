"""The database's one connection and its ordered queue of operations, committed in groups.

Rule: every read and write of the memory database goes through ``Writer``, in the order it was
submitted, on one connection. The serving task takes everything queued, runs it in one transaction
and commits once (group commit): concurrent processes share a commit, and an operation's effects are
durable before its ``run`` returns. ``post`` queues an operation without waiting for it; posted
operations wait up to ``delay`` seconds for company unless something urgent arrives.

Hot-path writes (journal entries, mailbox rows) are queued as *rows* of a known statement
(``ROW_SQL``) rather than as functions: consecutive rows of one statement run as one executemany,
and on SQLite a batch of rows only runs in a single hop to the driver's thread (BEGIN IMMEDIATE,
executemany..., COMMIT), which is what makes a journaled syscall cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llmasos.memory.db import translate
from llmasos.memory.errors import DatabaseCorrupt, DatabaseFull, DatabaseLocked, MemoryStoreError

Op = Callable[[AsyncConnection], Awaitable[Any]]
Row = tuple[str, dict[str, Any]]  # (a ROW_SQL name, its parameters)
_FATAL = (DatabaseLocked, DatabaseFull, DatabaseCorrupt)

ROW_SQL = {
    "journal+": "INSERT INTO journal (pid, n, call, digest, status, result, error_type, at) "
                "VALUES (:pid, :n, :call, :digest, :status, :result, :error_type, :at)",
    "journal=": "UPDATE journal SET call = :call, digest = :digest, status = :status, result = :result, "
                "error_type = :error_type, at = :at WHERE pid = :pid AND n = :n",
    "mailbox+": "INSERT INTO mailbox (id, pid, sender, body) VALUES (:id, :pid, :sender, :body)",
    "mailbox-": "DELETE FROM mailbox WHERE id = :id",
}


class _Pending:
    __slots__ = ("fn", "rows", "done", "value", "error")

    def __init__(self, fn: Op | None, rows: list[Row] | None = None) -> None:
        self.fn = fn
        self.rows = rows or []
        self.done: anyio.Event | None = None
        self.value: Any = None
        self.error: BaseException | None = None


class Writer:
    """Ordered, grouped execution of database operations on one connection."""

    def __init__(self, engine: AsyncEngine, where: str, *, delay: float = 0.0) -> None:
        self.engine = engine
        self.where = where  # the database, for error messages
        self.delay = delay  # seconds posted operations may wait for company
        self.conn: AsyncConnection | None = None
        self.commits = 0  # transactions committed (statistics for benchmarks)
        self._queue: list[_Pending] = []
        self._urgent = False
        self._wake = anyio.Event()
        self._hurry = anyio.Event()
        self._serving = False
        self._direct = anyio.Lock()
        self._fast: Any = None  # the aiosqlite connection, for one-hop batches of rows

    async def open(self) -> AsyncConnection:
        try:
            self.conn = await self.engine.connect()
            if self.engine.dialect.name == "sqlite":
                driver = (await self.conn.get_raw_connection()).driver_connection
                if hasattr(driver, "_execute") and hasattr(driver, "_conn"):
                    self._fast = driver
        except Exception as exc:
            raise translate(exc, self.where) from exc
        return self.conn

    # -- submitting --------------------------------------------------------------------------

    async def run(self, fn: Op | None = None, *, rows: list[Row] | None = None) -> Any:
        """Run fn(conn) (or write rows) after everything queued before; return once committed."""
        op = _Pending(fn, rows)
        op.done = anyio.Event()
        if not self._serving:  # before the serving task starts (boot) or after it stopped
            async with self._direct:
                await self._commit([*self._take(), op])
        else:
            self._push(op, urgent=True)
            await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.value

    def post(self, fn: Op | None = None, *, rows: list[Row] | None = None, urgent: bool = False) -> None:
        """Queue fn(conn) (or rows) and return at once; its errors are reported by ``on_error``."""
        self._push(_Pending(fn, rows), urgent=urgent)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self.run(_nothing)

    def on_error(self, error: MemoryStoreError) -> None:
        """Called with the error of a posted operation that nobody waits for (override to log)."""

    def _push(self, op: _Pending, *, urgent: bool) -> None:
        self._queue.append(op)
        self._wake.set()
        if urgent:
            self._urgent = True
            self._hurry.set()

    def _take(self) -> list[_Pending]:
        batch, self._queue, self._urgent = self._queue, [], False
        return batch

    # -- serving -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """The serving task: commit what is queued, group by group, until cancelled."""
        self._serving = True
        try:
            while True:
                if not self._queue:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                if not self._urgent and self.delay > 0:
                    self._hurry = anyio.Event()
                    with anyio.move_on_after(self.delay):
                        await self._hurry.wait()
                batch = self._take()
                with anyio.CancelScope(shield=True):  # a started commit always finishes
                    await self._commit(batch)
        finally:
            self._serving = False

    async def _commit(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        conn = self.conn
        assert conn is not None, "Writer.open() first"
        try:
            if self._fast is not None and all(op.fn is None for op in batch):
                groups = _group([r for op in batch for r in op.rows])
                await self._fast._execute(_write_rows, self._fast, groups)  # one hop, one commit
                values: list[Any] = [None] * len(batch)
            else:
                values = await self._run_batch(conn, batch)
        except Exception as exc:
            error = translate(exc, self.where)
            if len(batch) > 1 and not isinstance(error, _FATAL):
                for op in batch:  # one bad operation must not fail its neighbours
                    await self._commit([op])
                return
            for op in batch:
                self._finish(op, None, error)
            return
        self.commits += 1
        for op, value in zip(batch, values):
            self._finish(op, value, None)

    async def _run_batch(self, conn: AsyncConnection, batch: list[_Pending]) -> list[Any]:
        values: list[Any] = []
        async with conn.begin():
            rows: list[Row] = []
            for op in batch:
                rows.extend(op.rows)
                if op.fn is not None:
                    for sql, params in _group(rows):
                        await conn.execute(text(sql), params)
                    rows = []
                values.append(await op.fn(conn) if op.fn is not None else None)
            for sql, params in _group(rows):
                await conn.execute(text(sql), params)
        return values

    def _finish(self, op: _Pending, value: Any, error: BaseException | None) -> None:
        op.value, op.error = value, error
        if op.done is not None:
            op.done.set()
        elif error is not None:
            self.on_error(error)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Commit what is still queued, then close the connection."""
        async with self._direct:
            with anyio.CancelScope(shield=True):
                await self._commit(self._take())
                if self.conn is not None:
                    await self.conn.close()
                    self.conn = None


async def _nothing(conn: AsyncConnection) -> None:
    return None


def _group(rows: list[Row]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one statement, as (sql, [params...]) for executemany."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    last = None
    for kind, params in rows:
        if kind != last:
            out.append((ROW_SQL[kind], []))
            last = kind
        out[-1][1].append(params)
    return out


def _write_rows(driver: Any, groups: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """In aiosqlite's thread: one transaction for a batch of rows (sqlite3 takes :name parameters)."""
    db = driver._conn
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in groups:
            db.executemany(sql, params)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
