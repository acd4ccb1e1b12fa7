"""Opening the memory database: URL, engine, SQLite pragmas, the one-kernel lock, clear errors.

Rule: every database error leaves this package translated by ``translate`` into a MemoryStoreError
that names the database and says what to do; nothing here ever deletes or recreates a file.
SQLite runs in WAL mode with ``synchronous=NORMAL`` by default: a commit survives the kernel being
killed (SIGKILL) at any moment; only an OS crash or power loss can drop the last commits (set
``KernelConfig.db_synchronous="FULL"`` to fsync every commit).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from llmasos.home import private_file
from llmasos.memory.errors import (
    DatabaseCorrupt, DatabaseFull, DatabaseLocked, Fenced, MemoryStoreError,
)

FENCED = "llmasos fenced"  # how the fence trigger's error starts (migration 5)


def database_url(database: str | None, home: Path) -> str:
    """The SQLAlchemy URL to use: the configured one, or SQLite at ``home/llmasos.db``."""
    if database:
        url = make_url(database)
        if url.drivername in ("sqlite", "sqlite+pysqlite"):
            url = url.set(drivername="sqlite+aiosqlite")
        elif url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            url = url.set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)
    return f"sqlite+aiosqlite:///{Path(home).expanduser() / 'llmasos.db'}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or u.database in (None, "", ":memory:"):
        return None
    return Path(u.database).expanduser()


def describe(url: str) -> str:
    """The database, for messages (no password)."""
    path = sqlite_path(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)


def create_engine(url: str, *, busy_timeout: float, synchronous: str,
                  idle_timeout: float | None = None) -> AsyncEngine:
    """An async engine; for SQLite with WAL, a busy timeout and BEGIN IMMEDIATE transactions.

    idle_timeout (PostgreSQL, a cluster node): the server ends a session left idle inside a transaction
    this long (a paused node), so the row locks it held cannot stop another node from adopting."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite"):
        if idle_timeout is None:
            return create_async_engine(url, pool_pre_ping=False)
        settings = {"idle_in_transaction_session_timeout": str(max(1, int(idle_timeout * 1000)))}
        return create_async_engine(url, pool_pre_ping=True, connect_args={"server_settings": settings})
    memory = u.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"poolclass": StaticPool} if memory else {}
    # check_same_thread=False: batches of rows commit on the loop's thread (see writer.py)
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout, "check_same_thread": False},
                                 **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Invariant: a transaction takes the write lock up front, so SQLite's busy handler applies
        # (a deferred transaction upgrading to a writer can fail at once with SQLITE_BUSY).
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def on_new_connections(engine: AsyncEngine, statement: str, check: Callable[[Any], None] | None = None) -> None:
    """Run statement on every connection engine opens from now on, committed (the pool's rollback would
    undo session settings), and hand its first value to check, which may raise to refuse the connection:
    a session the server dropped is replaced by a new one that must be set up as the first was."""
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
            row = cursor.fetchone()
        finally:
            cursor.close()
        dbapi_connection.commit()
        if check is not None:
            check(row[0] if row else None)

    event.listen(engine.sync_engine, "connect", on_connect)


def translate(exc: BaseException, where: str) -> MemoryStoreError:
    """A MemoryStoreError for a database failure at where (the database's description)."""
    if isinstance(exc, MemoryStoreError):
        return exc
    text = str(getattr(exc, "orig", None) or exc)
    low = text.lower()
    if FENCED in low:  # (raised by the fence trigger of migration 5: memory/cluster.py)
        return Fenced(f"{text.split(FENCED, 1)[-1].strip(': ')} (epoch changed in {where}): another node adopted "
                      "its processes, so it commits nothing more; restart it to rejoin")
    if "locked" in low or "busy" in low:
        return DatabaseLocked(
            f"the memory database {where} is locked by another program ({text}); stop the other "
            "llmasos kernel or tool using it, or raise KernelConfig.db_busy_timeout"
        )
    if "full" in low or "no space" in low or "disk quota" in low:
        return DatabaseFull(
            f"the memory database {where} cannot grow: {text}; free disk space (or raise the "
            "database's size limit), then retry"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low or "encrypted" in low:
        return DatabaseCorrupt(
            f"the memory database {where} is damaged or not an llmasos database ({text}); it was left "
            f"untouched: move it aside (mv {where} {where}.broken) or set LLMASOS_HOME elsewhere"
        )
    kind = type(getattr(exc, "orig", None) or exc).__name__
    if isinstance(exc, (DBAPIError, SQLAlchemyError, OSError)):
        return MemoryStoreError(f"the memory database {where} failed: {kind}: {text}")
    return MemoryStoreError(f"the memory database {where} failed unexpectedly: {kind}: {text}")


def make_private(path: Path) -> None:
    """The database file (made empty if missing, which SQLite takes as a new database) and its -wal and
    -shm files readable by their owner only (0600). SQLite gives the -wal and -shm files it creates the
    database file's mode, so they are born private too."""
    private_file(path)
    for suffix in ("-wal", "-shm"):
        other = path.with_name(path.name + suffix)
        if other.exists() and other.stat().st_mode & 0o077:
            os.chmod(other, 0o600)


class KernelLock:
    """An exclusive advisory lock beside a SQLite file: one kernel per database."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DatabaseLocked(
                f"another llmasos kernel is using {self.path.with_suffix('')}; stop it first, or give "
                "this kernel its own LLMASOS_HOME (or KernelConfig.home)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
