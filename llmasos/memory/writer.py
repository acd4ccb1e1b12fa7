"""The database's one connection and its ordered queue of operations, committed in groups.

Rule: every read and write of the memory database goes through ``Writer``, in the order it was
submitted, on one connection. The serving task takes everything queued, runs it in one transaction
and commits once (group commit): concurrent processes share a commit, and an operation's effects are
durable before its ``run`` returns. ``post`` queues an operation without waiting for it; posted
operations wait up to ``delay`` seconds for company unless something urgent arrives.

Hot-path writes (journal entries, process and mailbox rows) are queued as *rows* of a known
statement (``ROW_SQL``) rather than as functions: consecutive rows of one statement run as one
executemany. On SQLite with ``synchronous`` OFF or NORMAL a batch of rows is committed right on the
event loop's thread (BEGIN IMMEDIATE, executemany..., COMMIT: tens of microseconds of page-cache
writes, no fsync), because a hop to the driver's thread and back costs more than the commit itself;
``write_now`` lets a caller with nobody to share a commit with do it at once, without a trip through
the serving task. So that this never stalls the loop, the connection then has ``busy_timeout=0``
(the writer waits for another program's lock itself, asleep, up to ``busy_timeout`` seconds) and no
automatic WAL checkpoint (the serving task checkpoints in the driver's thread every
``checkpoint_every`` commits). Functions, and rows on other databases or with ``synchronous`` FULL
or EXTRA (an fsync per commit), run in the driver's thread (aiosqlite) or on the async driver.

A PostgreSQL session the server dropped is replaced, not reported: a transaction lost before COMMIT
(the server rolled it back) runs again on a new connection, waiting up to ``busy_timeout`` for the
server; one lost as it committed is run again only once the server says it was not committed
(``_outcome``), so no write is applied twice. Functions run again must leave no trace of a first try
outside the database (they may be called twice).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llmasos.memory.db import translate
from llmasos.memory.errors import DatabaseCorrupt, DatabaseFull, DatabaseLocked, Fenced, MemoryStoreError
from llmasos.memory.receipt import Receipt

Op = Callable[[AsyncConnection], Awaitable[Any]]
Row = tuple[str, dict[str, Any]]  # (a ROW_SQL name, its parameters)
_log = logging.getLogger("llmasos.memory")
_FATAL = (DatabaseLocked, DatabaseFull, DatabaseCorrupt, Fenced)

ROW_SQL = {
    "journal+": "INSERT INTO journal (pid, n, call, digest, status, result, error_type, span, at) "
                "VALUES (:pid, :n, :call, :digest, :status, :result, :error_type, :span, :at)",
    "journal=": "UPDATE journal SET call = :call, digest = :digest, status = :status, result = :result, "
                "error_type = :error_type, span = :span, at = :at WHERE pid = :pid AND n = :n",
    "mailbox+": "INSERT INTO mailbox (id, pid, sender, body) VALUES (:id, :pid, :sender, :body)",
    "mailbox-": "DELETE FROM mailbox WHERE id = :id",
    "mailbox-of": "DELETE FROM mailbox WHERE pid = :pid",
    "process+": "INSERT INTO processes (pid, app, spec, args, kwargs, state, priority, parent, caps, "
                "usage, exit_value, error, started, ended, spawn_key, node, node_epoch) VALUES (:pid, :app, "
                ":spec, :args, :kwargs, :state, :priority, :parent, :caps, :usage, :exit_value, :error, "
                ":started, :ended, :spawn_key, :node, :node_epoch)",
    "process-end": "UPDATE processes SET state = :state, ended = :ended, exit_value = :exit_value, "
                   "error = :error, usage = :usage WHERE pid = :pid",
    "process-priority": "UPDATE processes SET priority = :priority WHERE pid = :pid",
    "process-lost": "UPDATE processes SET state = :state, ended = :ended, error = :error WHERE pid = :pid",
    "meta=": "UPDATE meta SET value = :value WHERE key = :key",  # keys the first migration made
}
_TEXT = {kind: text(sql) for kind, sql in ROW_SQL.items()}  # compiled once, for async drivers


_XID = text("SELECT txid_current()")  # PostgreSQL: the transaction's id, asked for as it begins ...
_XID_STATUS = text("SELECT txid_status(:xid)")  # ... so that its outcome can be asked for on a new session
_END_SESSION = text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = :pid "
                    "AND pid <> pg_backend_pid()")  # the lost session's server process, if it still runs
_SESSION_ENDED = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid AND pid <> pg_backend_pid()")
_WITNESS = {kind: (text(f"SELECT 1 FROM {table} WHERE " + " AND ".join(f"{k} = :{k}" for k in keys)), keys)
            for kind, table, keys in (("journal+", "journal", ("pid", "n")), ("process+", "processes", ("pid",)),
                                      ("mailbox+", "mailbox", ("id",)))}  # a row a batch inserted: is it there?


class _Dropped(Exception):
    """The database session was lost (the server closed it) before COMMIT was sent: the server rolled the
    transaction back, so running it again on a new connection commits it once."""


class _AtCommit(Exception):
    """The session was lost while the transaction committed (PostgreSQL): whether it was committed is the
    server's to say, by ``txid_status(xid)`` (a batch with functions) or by a row the batch inserted
    (rows only: ``_witness``); values are what its operations returned."""

    def __init__(self, xid: int | None, values: list[Any], backend: int | None) -> None:
        super().__init__(xid)
        self.xid, self.values = xid, values
        self.backend = backend  # the lost session's server process id


class _Pending:
    __slots__ = ("fn", "rows", "owner", "done", "value", "error", "finished", "repeatable")

    def __init__(self, fn: Op | None, rows: list[Row] | None = None, owner: int | None = None, *,
                 repeatable: bool = False) -> None:
        self.fn = fn
        self.rows = rows or []
        self.owner = owner  # the pid whose call queued it (posted operations), for on_error
        self.repeatable = repeatable  # fn run twice leaves what running it once does, and returns the same
        self.done: anyio.Event | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False



class Writer:
    """Ordered, grouped execution of database operations on one connection."""

    def __init__(self, engine: AsyncEngine, where: str, *, delay: float, busy_timeout: float,
                 checkpoint_every: int) -> None:
        self.engine = engine
        self.where = where  # the database, for error messages
        self.delay = delay  # seconds posted operations may wait for company
        self.busy_timeout = busy_timeout  # seconds to wait for another program's lock
        self.checkpoint_every = checkpoint_every  # commits between WAL checkpoints when rows commit inline
        self.conn: AsyncConnection | None = None
        self.commits = 0  # transactions committed (statistics for benchmarks)
        self._queue: list[_Pending] = []
        self._urgent = False
        self._wake = anyio.Event()
        self._hurry = anyio.Event()
        self._serving = False
        self._direct = anyio.Lock()
        self._driver: Any = None  # SQLite: the aiosqlite connection (its thread runs blocking work)
        self._raw: Any = None  # SQLite: the sqlite3 connection under it, for batches of rows
        self._inline = False  # rows commit on the loop's thread (see the module's docstring)
        self._checkpointed = 0  # self.commits at the last WAL checkpoint
        self._busy = False  # the serving task awaits work on the connection in the driver's thread
        self._xids = engine.dialect.name == "postgresql"  # a lost COMMIT's outcome can be asked for
        self.on_fenced: Callable[[], None] | None = None  # told when a commit fails with Fenced (a cluster
        # node that lost its lease: the database's fence trigger refused it; memory/cluster.py)

    async def open(self) -> AsyncConnection:
        try:
            self.conn = await self.engine.connect()
            if self.engine.dialect.name == "sqlite":
                driver = (await self.conn.get_raw_connection()).driver_connection
                if hasattr(driver, "_execute") and hasattr(driver, "_conn"):
                    self._driver, self._raw = driver, driver._conn
        except Exception as exc:
            raise translate(exc, self.where) from exc
        return self.conn

    # -- submitting --------------------------------------------------------------------------

    async def run(self, fn: Op | None = None, *, rows: list[Row] | None = None, repeatable: bool = False) -> Any:
        """Run fn(conn) (or write rows) after everything queued before; return once committed.

        repeatable: running fn twice leaves the database as running it once and returns the same (a read,
        an upsert). A transaction of such functions and rows whose session is lost as it commits can be
        run again without asking the server whether it was committed (PostgreSQL: no ``txid_current``
        round trip for it)."""
        op = _Pending(fn, rows, repeatable=repeatable)
        op.done = anyio.Event()
        if not self._serving:  # before the serving task starts (boot) or after it stopped
            async with self._direct:
                if not self._serving:  # (it may have started while we waited for the lock)
                    await self._commit([*self._take(), op])
        if not op.done.is_set():
            self._push(op, urgent=True)
            await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.value

    def post(self, fn: Op | None = None, *, rows: list[Row] | None = None, urgent: bool = False,
             owner: int | None = None) -> Receipt:
        """Queue fn(conn) (or rows) and return at once; its errors go to ``on_error`` with owner, unless
        the receipt returned is awaited before it is committed (then they are raised there)."""
        op = _Pending(fn, rows, owner)
        self._push(op, urgent=urgent)
        return Receipt(self, (op,))

    async def settle(self, ops: tuple[_Pending, ...]) -> None:
        """Wait until posted ops are committed (at once: they wait for no company); raise the first
        error among them."""
        waiting = [op for op in ops if not op.finished]
        for op in waiting:
            if op.done is None:
                op.done = anyio.Event()  # (from now on a failure is raised here, not sent to on_error)
        if waiting and not self._serving:  # before the serving task starts (boot) or after it stopped
            async with self._direct:
                if not self._serving:
                    await self._commit(self._take())
        if any(not op.finished for op in waiting) and not self.write_now([]):
            self._hurry_up()
        for op in waiting:
            if not op.finished:  # (committed inline just now: no need to yield)
                await op.done.wait()  # type: ignore[union-attr]
        for op in ops:
            if op.error is not None:
                raise op.error

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self.run(rows=[])

    def on_error(self, error: MemoryStoreError, owner: int | None) -> None:
        """The error of a posted operation that nobody waits for, and the pid that posted it (or None).

        Replaced by whoever runs the writer (the kernel reports it on that process); until then it is
        logged, so a failed queued write never vanishes.
        """
        _log.error("a queued write to %s failed (pid %s): %s", self.where, owner, error)

    def _push(self, op: _Pending, *, urgent: bool) -> None:
        self._queue.append(op)
        self._wake.set()
        if urgent:
            self._hurry_up()

    def _hurry_up(self) -> None:
        """The serving task commits what is queued at once (no waiting for company)."""
        self._wake.set()
        self._urgent = True
        self._hurry.set()

    def _take(self) -> list[_Pending]:
        batch, self._queue, self._urgent = self._queue, [], False
        return batch

    # -- serving -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """The serving task: commit what is queued, group by group, until cancelled."""
        async with self._direct:
            if self._raw is not None:
                self._inline = await self._driver._execute(_go_inline, self._raw)
            self._serving = True
        try:
            while True:
                if self._inline and self.commits - self._checkpointed >= self.checkpoint_every:
                    await self._shielded(self._checkpoint())
                if not self._queue:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                # One more round of the event loop: processes that are ready now add their entries to
                # this commit (a process alone commits without coming here: write_now).
                await anyio.lowlevel.checkpoint()
                if not self._urgent and self.delay > 0:
                    self._hurry = anyio.Event()
                    with anyio.move_on_after(self.delay):
                        await self._hurry.wait()
                batch = self._take()
                # Invariant: an inline commit has no await, so it cannot be cancelled halfway.
                if batch and not (self._inline and self._commit_inline(batch)):
                    await self._shielded(self._commit(batch))
        finally:
            self._serving = False

    async def _shielded(self, work: Awaitable[None]) -> None:
        """Await work that uses the connection in another thread: it always finishes once started."""
        self._busy = True
        try:
            with anyio.CancelScope(shield=True):
                await work
        finally:
            self._busy = False

    def write_now(self, rows: list[Row]) -> bool:
        """Commit rows (after what is queued) right now, on this thread, if the writer can.

        True: committed. False: nothing done (not SQLite, FULL sync, the connection is busy in the
        driver's thread, or the commit failed); ``run(rows=...)`` then does it, or reports why.
        """
        if not (self._inline and self._serving) or self._busy:
            return False
        batch = [*self._take(), _Pending(None, rows)]
        if self._commit_inline(batch):
            if self.commits - self._checkpointed >= self.checkpoint_every:
                self._wake.set()  # the serving task checkpoints
            return True
        self._queue[:0] = batch[:-1]  # back in front, in order
        if len(batch) > 1:
            self._hurry_up()
        return False

    def _commit_inline(self, batch: list[_Pending]) -> bool:
        """Commit a batch of rows on this thread; False (nothing done) if it has functions or failed."""
        if any(op.fn is not None for op in batch):
            return False
        try:
            _write_rows(self._raw, _group([r for op in batch for r in op.rows]))
        except Exception:
            return False  # _commit retries it, waits for a lock, or reports the error
        self.commits += 1
        for op in batch:
            self._finish(op, None, None)
        return True

    async def _commit(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        assert self.conn is not None, "Writer.open() first"
        deadline = anyio.current_time() + self.busy_timeout
        pause = 0.0  # seconds before the next try on a new connection (a lost session; doubled each time)
        while True:
            whole = False  # the error is the whole batch's (do not retry its operations one by one)
            try:
                values = await self._attempt(batch)
                break
            except _Dropped as exc:  # the session was lost before COMMIT: nothing of batch was committed
                await self._renew()
                left = deadline - anyio.current_time()
                if left > 0:  # run it again on a new connection (a fenced session on a cluster node)
                    if not pause:
                        _log.warning("the session to %s was lost (%s); running the transaction again on a "
                                     "new connection", self.where, exc.__cause__)
                    pause = min(pause * 2 or 0.01, 0.5)
                    await anyio.sleep(min(pause, left))
                    continue
                cause = translate(exc.__cause__, self.where)  # type: ignore[arg-type]
                error: MemoryStoreError = MemoryStoreError(
                    f"the session to {self.where} was lost and no new one could be opened within "
                    f"{self.busy_timeout:g}s ({cause}); is the database server up? (KernelConfig."
                    "db_busy_timeout is how long the writer waits for it)")
                whole = True
            except _AtCommit as exc:
                _log.warning("the session to %s was lost as it committed (%s); asking the server whether it "
                             "was committed", self.where, exc.__cause__)
                await self._renew()
                outcome = await self._outcome(exc, batch, deadline)
                if outcome == "committed":
                    values = exc.values
                    break
                if outcome == "aborted" and anyio.current_time() < deadline:  # (nothing of it was
                    pause = min(pause * 2 or 0.01, 0.5)  # committed: run it again)
                    continue
                cause = translate(exc.__cause__, self.where)  # type: ignore[arg-type]
                error = MemoryStoreError(
                    f"the session to {self.where} was lost while it committed ({cause}), " + (
                        f"again and again for {self.busy_timeout:g}s; nothing of it was committed"
                        if outcome == "aborted" else
                        f"and the server could not say (within {self.busy_timeout:g}s) whether it was "
                        "committed; these writes are not run again"))
                whole = True
            except Exception as exc:
                error = translate(exc, self.where)
                if session_lost(exc):  # at COMMIT, where the server cannot be asked (not PostgreSQL)
                    error = MemoryStoreError(
                        f"the session to {self.where} was lost while it committed ({error}); whether these "
                        "writes were committed is unknown, so they are not run again")
                    whole = True
            if isinstance(error, DatabaseLocked):  # another program writes: wait for it, asleep
                left = deadline - anyio.current_time()
                if left > 0:
                    await anyio.sleep(min(0.005, left))
                    continue
            if isinstance(error, Fenced) and self.on_fenced is not None:
                self.on_fenced()
            if len(batch) > 1 and not whole and not isinstance(error, _FATAL):
                for op in batch:  # one bad operation must not fail its neighbours
                    await self._commit([op])
                return
            for op in batch:
                self._finish(op, None, error)
            return
        self.commits += 1
        for op, value in zip(batch, values):
            self._finish(op, value, None)

    async def _attempt(self, batch: list[_Pending]) -> list[Any]:
        """Run batch in one transaction; the values of its operations."""
        if self._raw is not None and all(op.fn is None for op in batch):
            groups = _group([r for op in batch for r in op.rows])
            if self._inline or not groups:
                _write_rows(self._raw, groups)
            else:
                await self._driver._execute(_write_rows, self._raw, groups)  # one hop, one commit
            return [None] * len(batch)
        return await self._run_batch(self.conn, batch)  # type: ignore[arg-type]

    async def _run_batch(self, conn: AsyncConnection, batch: list[_Pending]) -> list[Any]:
        values: list[Any] = []
        xid = backend = None
        committing = False
        try:
            async with conn.begin():  # (a new connection if the last one was lost)
                if self._xids:
                    backend = _backend_pid(conn)
                    if any(op.fn is not None and not op.repeatable for op in batch):  # (else: _witness)
                        xid = (await conn.execute(_XID)).scalar_one()
                rows: list[Row] = []
                for op in batch:
                    rows.extend(op.rows)
                    if op.fn is not None:
                        for kind, params in _group(rows):
                            await conn.execute(_TEXT[kind], params)
                        rows = []
                    values.append(await op.fn(conn) if op.fn is not None else None)
                for kind, params in _group(rows):
                    await conn.execute(_TEXT[kind], params)
                committing = True
        except Exception as exc:
            if session_lost(exc):
                if not committing:
                    raise _Dropped() from exc
                if self._xids:
                    raise _AtCommit(xid, values, backend) from exc
            raise
        return values

    async def _outcome(self, lost: _AtCommit, batch: list[_Pending], deadline: float) -> str | None:
        """'committed' or 'aborted': what became of a transaction whose session was lost as it committed,
        asked on a new session once the lost one's server process has ended (the client may have lost a
        session the server still holds, in a partition: it is ended, so that its transaction is over and
        holds no lock); None if nobody can say (before deadline)."""
        assert self.conn is not None
        ended = lost.backend is None
        if lost.xid is not None:
            query, params = _XID_STATUS, {"xid": lost.xid}
        else:
            found = _witness([r for op in batch for r in op.rows])
            if found is None:
                return "aborted"  # (it inserts nothing: running it again changes nothing if it was committed)
            if found is False:
                return None
            query, params = found
        pause = 0.01
        while True:
            try:
                if not ended:
                    ended = await self._end_session(lost.backend)  # type: ignore[arg-type]
                if ended:
                    async with self.conn.begin():
                        state = (await self.conn.execute(query, params)).scalar()
                    if lost.xid is None:
                        return "committed" if state is not None else "aborted"
                    if state != "in progress":
                        return state  # committed, aborted, or None: too old to say
            except Exception as exc:
                if lost.xid is not None and "in the future" in str(exc):  # (the server restarted without
                    return "aborted"  # a trace of it: its commit never reached the log)
                if session_lost(exc):
                    await self._renew()
                else:
                    _log.warning("asking %s whether a transaction was committed failed: %s", self.where, exc)
                    return None
            left = deadline - anyio.current_time()
            if left <= 0:
                return None
            await anyio.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    async def _renew(self) -> None:
        """Drop the connection's lost session (its next use opens a new one), if SQLAlchemy has not."""
        assert self.conn is not None
        try:
            await self.conn.invalidate()
        except Exception as exc:  # (nothing to drop, or it is half gone: the next use says)
            _log.debug("invalidating a lost session failed: %s", exc)

    async def _end_session(self, backend: int) -> bool:
        """End the server process of a lost session if it still runs; whether it is gone (True as well if
        this role may not end it: the answer is then asked for as it is)."""
        assert self.conn is not None
        try:
            async with self.conn.begin():
                await self.conn.execute(_END_SESSION, {"pid": backend})
        except Exception as exc:
            if session_lost(exc):
                raise
            return True
        async with self.conn.begin():
            return bool((await self.conn.execute(_SESSION_ENDED, {"pid": backend})).scalar())

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database file, in the driver's thread (PASSIVE: never waits)."""
        self._checkpointed = self.commits
        try:
            await self._driver._execute(_checkpoint, self._raw)
        except Exception as exc:
            self.on_error(translate(exc, self.where), None)

    def _finish(self, op: _Pending, value: Any, error: BaseException | None) -> None:
        op.value, op.error, op.finished = value, error, True
        if op.done is not None:
            op.done.set()
        elif error is not None:
            self.on_error(error, op.owner)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Commit what is still queued, then close the connection."""
        async with self._direct:
            with anyio.CancelScope(shield=True):
                await self._commit(self._take())
                if self.conn is not None:
                    await self.conn.close()
                    self.conn = None
                    self._driver = self._raw = None
                    self._inline = False


_GONE = ("08", "57P01", "57P02", "57P03")  # SQLSTATEs: connection exception; the server shuts down or starts


_GONE_WORDS = ("connection was closed", "connection is closed", "cannot switch to state")  # asyncpg, before
# it noticed its socket closed (SQLAlchemy then does not invalidate the connection: the writer does)


def session_lost(exc: BaseException) -> bool:
    """Whether exc says the session to the server is gone, or a new one could not be opened yet."""
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        return (bool(exc.connection_invalidated) or isinstance(exc.orig, OSError)
                or (bool(state) and state.startswith(_GONE)) or any(w in str(exc.orig) for w in _GONE_WORDS))
    return isinstance(exc, OSError)


def _backend_pid(conn: AsyncConnection) -> int | None:
    """The server process id of conn's session (known to the driver since it connected), or None."""
    try:
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    except Exception:
        return None
    if hasattr(driver, "get_server_pid"):  # asyncpg
        return int(driver.get_server_pid())
    pid = getattr(getattr(driver, "info", None), "backend_pid", None)  # psycopg
    return int(pid) if pid else None


def _witness(rows: list[Row]) -> tuple[Any, dict[str, Any]] | None | bool:
    """How to tell whether rows were committed: (query, params) finding a row they insert and nothing in
    them deletes; None if they insert nothing (updates and deletes, which the serial writer may run
    again harmlessly); False if no row can tell."""
    deletes_mail = any(kind in ("mailbox-", "mailbox-of") for kind, _ in rows)
    inserts = False
    for kind, params in rows:
        if kind in _WITNESS:
            inserts = True
            if not (kind == "mailbox+" and deletes_mail):
                query, keys = _WITNESS[kind]
                return query, {k: params[k] for k in keys}
    return False if inserts else None


def _group(rows: list[Row]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one statement, as (kind, [params...]) for executemany."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    last = None
    for kind, params in rows:
        if kind != last:
            out.append((kind, []))
            last = kind
        out[-1][1].append(params)
    return out


def _go_inline(db: Any) -> bool:
    """In the driver's thread: whether rows may commit on the loop's thread, and prepare for it."""
    # Invariant: every statement here is stepped to its end (fetchall), so none is left in progress
    # (an unfinished one would make the next COMMIT fail).
    if db.execute("PRAGMA synchronous").fetchall()[0][0] > 1:  # FULL or EXTRA: an fsync per commit
        return False
    db.execute("PRAGMA busy_timeout = 0").fetchall()  # the writer waits for locks itself, asleep
    db.execute("PRAGMA wal_autocheckpoint = 0").fetchall()  # the writer checkpoints (_checkpoint)
    return True


def _checkpoint(db: Any) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _write_rows(db: Any, groups: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """One transaction for a batch of rows on a sqlite3 connection (it takes :name parameters)."""
    if not groups:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for kind, params in groups:
            db.executemany(ROW_SQL[kind], params)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
